"""The schedules' loop: at each tick of a `[schedules.NAME]`, one message on its queue.

Each tick's message carries the idempotency key `schedule:NAME:TICK` (schedules.tick_key),
and the ScheduleStore fires a tick only when it is later than the schedule's last run,
which it keeps with the backend (schedule_store.py; on amqp shared by every node under a
lock, amqp/schedules.py). So a tick is published once however many nodes run it, and a
restart does not publish again what was published before it.

The Runtime owns the loop (Runtime.run's TaskGroup) and cancels it with the broker's other
background work at a stop. The clock is a parameter: the tests move time, not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from .broker.base import Broker
from .broker.schedule_store import ScheduleState, ScheduleStore
from .config_schedules import ScheduleSettings, body_of
from .errors import SpoolError, UnknownSchedule
from .model import Envelope
from .schedules import Cron, iso, next_tick, tick_key, tick_to_catch_up, ticks_between

log = logging.getLogger(__name__)

# The loop looks at the clock at least this often, so a clock that was set (NTP) or a
# per-second schedule is seen within a second.
MAX_SLEEP_S = 1.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ScheduleView(msgspec.Struct):
    """One schedule as GET /v1/schedules answers it (times in UTC, ISO 8601)."""

    name: str
    cron: str
    timezone: str
    queue: str
    priority: int
    catch_up: bool
    paused: bool
    last_run: Annotated[str | None, msgspec.Meta(description="the last tick run; null: none")]
    next_run: Annotated[str | None, msgspec.Meta(description="the next tick; null when paused")]


class Scheduler:
    def __init__(
        self,
        schedules: dict[str, ScheduleSettings],
        broker: Broker,
        store: ScheduleStore,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._settings = schedules
        self._crons = {n: Cron.parse(s.cron, s.timezone) for n, s in schedules.items()}
        self._bodies = {n: body_of(s) for n, s in schedules.items()}
        self._broker = broker
        self._store = store
        self._clock = clock
        self._states: dict[str, ScheduleState] = {n: ScheduleState() for n in schedules}

    @property
    def names(self) -> list[str]:
        return list(self._settings)

    async def start(self) -> None:
        """Once the broker has started: the state each schedule was left in."""
        self._states.update(await self._store.load(self.names))

    async def run(self) -> None:
        """Until cancelled: first the one missed tick of each schedule that catches up,
        then every tick as it comes."""
        started = self._clock()
        for name, cron in self._crons.items():
            last = self._states[name].last_run
            missed = tick_to_catch_up(cron, last, started, catch_up=self._settings[name].catch_up)
            if missed is not None:
                log.info("schedule %s: running the tick missed at %s", name, iso(missed))
                await self._fire(name, missed)
        cursor = started
        while True:
            now = self._clock()
            for name, cron in self._crons.items():
                due = ticks_between(cron, cursor, now)
                if due:  # a stall that spans several ticks runs the latest only
                    await self._fire(name, due[-1])
            cursor = now
            soonest = min(next_tick(cron, now) for cron in self._crons.values())
            wait = (soonest - self._clock()).total_seconds()
            await asyncio.sleep(min(max(wait, 0.0), MAX_SLEEP_S))

    async def _fire(self, name: str, tick: datetime) -> None:
        schedule = self._settings[name]
        envelope = Envelope(
            body=msgspec.Raw(self._bodies[name]),
            priority=schedule.priority,
            idempotency_key=tick_key(name, tick),
        )

        async def publish() -> None:
            await self._broker.publish(schedule.queue, [envelope])

        try:
            self._states[name] = await self._store.fire(name, tick, publish)
        except (SpoolError, OSError, ConnectionError, TimeoutError) as exc:
            # Another node may publish it; this one tries the next tick.
            log.warning("schedule %s: the tick at %s was not published: %s", name, iso(tick), exc)

    # ------------------------------------------------------------------ the routes
    async def views(self) -> list[ScheduleView]:
        return [await self.view(name) for name in self._settings]

    async def view(self, name: str) -> ScheduleView:
        self._known(name)
        try:
            self._states[name] = await self._store.read(name)
        except (SpoolError, OSError, ConnectionError, TimeoutError):
            log.debug("reading schedule %s failed; answering the last state seen", name)
        return self._view_of(name)

    async def set_paused(self, name: str, paused: bool) -> ScheduleView:
        self._known(name)
        self._states[name] = await self._store.set_paused(name, paused)
        return self._view_of(name)

    def _view_of(self, name: str) -> ScheduleView:
        schedule, state = self._settings[name], self._states[name]
        upcoming = None if state.paused else next_tick(self._crons[name], self._clock())
        return ScheduleView(
            name=name,
            cron=schedule.cron,
            timezone=schedule.timezone,
            queue=schedule.queue,
            priority=schedule.priority,
            catch_up=schedule.catch_up,
            paused=state.paused,
            last_run=None if state.last_run is None else iso(state.last_run),
            next_run=None if upcoming is None else iso(upcoming),
        )

    def _known(self, name: str) -> None:
        if name not in self._settings:
            raise UnknownSchedule(f"schedule {name!r} is not configured")
