"""The schedules' loop with the clock moved by the test (scheduler.py): a tick publishes one
message with its key, and a restart after downtime runs the one missed tick only with
catch_up, on the node-local backends' state file (broker/schedule_store.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.broker.local import LocalBroker
from service.broker.schedule_store import FileScheduleStore
from service.broker.storage import NoStorage
from service.model import Envelope
from service.scheduler import Scheduler
from service.schedules import tick_key

from .conftest import make_settings
from .waits import until

QUEUES = {"q": {"handler": "tests.handlers:echo"}}


def hourly(catch_up: bool) -> dict[str, object]:
    return {"cron": "0 * * * *", "queue": "q", "catch_up": catch_up, "body": {"n": 1}}


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.at


async def published(broker: LocalBroker) -> int:
    return (await broker.stats("q")).counts.published


async def key_is_held(broker: LocalBroker, key: str) -> bool:
    """A repeat of `key` answers with the earlier message (created False), and a key never
    published is taken: so this asks without changing what is held (it cancels that)."""
    [done] = await broker.publish("q", [Envelope(body=b"0", idempotency_key=key)])  # type: ignore[arg-type]
    if done.created:
        await broker.cancel(done.message.id)
    return not done.created


@pytest.mark.parametrize("catch_up", [True, False])
async def test_restart_after_downtime_runs_one_missed_tick_only_with_catch_up(
    tmp_path: Path, catch_up: bool
) -> None:
    settings = make_settings(QUEUES, schedules={"hourly": hourly(catch_up)})
    broker = LocalBroker(settings.queues, settings.results, storage=NoStorage())
    await broker.start()
    path = tmp_path / "schedules.json"
    clock = Clock(datetime(2026, 1, 1, 0, 59, 59, tzinfo=UTC))
    first = Scheduler(settings.schedules, broker, FileScheduleStore(path), clock=clock)
    await first.start()
    task = asyncio.create_task(first.run())
    await until(lambda: clock.reads > 0, "the loop's start")  # it starts at 00:59:59
    clock.at = datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC)
    try:
        while (await first.view("hourly")).last_run is None:
            assert not task.done()
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert (await first.view("hourly")).last_run == "2026-01-01T01:00:00Z"
    assert await published(broker) == 1
    # Down from 01:00 to 05:30: the ticks of 02:00 to 05:00 were missed.
    clock.at = datetime(2026, 1, 1, 5, 30, tzinfo=UTC)
    second = Scheduler(settings.schedules, broker, FileScheduleStore(path), clock=clock)
    await second.start()
    task = asyncio.create_task(second.run())
    try:
        # The catch-up is the loop's first step; without it, the first step is the sleep.
        while (await second.view("hourly")).last_run != "2026-01-01T05:00:00Z" and catch_up:
            assert not task.done()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert await published(broker) == (2 if catch_up else 1)
    missed = datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert await key_is_held(broker, tick_key("hourly", missed)) is catch_up
    for hour in (2, 3, 4):
        assert not await key_is_held(broker, tick_key("hourly", missed.replace(hour=hour)))
    assert (await second.view("hourly")).next_run == "2026-01-01T06:00:00Z"
    await broker.close()


async def test_a_paused_schedule_publishes_nothing_and_stays_paused_after_a_restart(
    tmp_path: Path,
) -> None:
    settings = make_settings(QUEUES, schedules={"hourly": hourly(True)})
    broker = LocalBroker(settings.queues, settings.results, storage=NoStorage())
    await broker.start()
    path = tmp_path / "schedules.json"
    clock = Clock(datetime(2026, 1, 1, 0, 59, 59, tzinfo=UTC))
    scheduler = Scheduler(settings.schedules, broker, FileScheduleStore(path), clock=clock)
    await scheduler.start()
    view = await scheduler.set_paused("hourly", True)
    assert view.paused and view.next_run is None
    task = asyncio.create_task(scheduler.run())
    await until(lambda: clock.reads > 1, "the loop's start")
    clock.at = datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC)
    # The loop looks at the clock at least once a second: two looks past the tick.
    await asyncio.sleep(2.5)
    task.cancel()
    assert await published(broker) == 0
    again = Scheduler(settings.schedules, broker, FileScheduleStore(path), clock=clock)
    await again.start()
    assert (await again.view("hourly")).paused
    assert not (await again.set_paused("hourly", False)).paused
    await broker.close()
