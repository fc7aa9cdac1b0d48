"""The schedules' state on RabbitMQ, shared by every node, and the lock that makes a tick's
publish happen once across them, with no leader.

An idempotency key alone is not enough across nodes: each node resolves keys from its own
view of the events stream (view.py), so two nodes that publish the same tick within the
stream's delay would both find it new. So per schedule NAME:

- `spool.schedule.NAME` (durable, `x-max-length = 1`) holds one record: the last tick run
  and whether the schedule is paused. A node that starts later reads it there.
- `spool.schedule.NAME.lock` is an exclusive queue: RabbitMQ lets one connection at a time
  declare it (another gets RESOURCE_LOCKED), and deletes it when that connection drops, so
  a node that dies holding it holds nothing.

A node fires a tick holding the lock: it reads the record, publishes the message (with its
`schedule:NAME:TICK` key) only if the tick is later than the last run and the schedule is
not paused, writes the new record, and lets go. A second node that comes for the same tick
finds it run. A node that dies after the publish and before the record leaves the tick
unrecorded: one that catches up publishes it again unless its view knows the key by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime

import aiormq
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from ...errors import Unavailable
from ..schedule_store import Publish, ScheduleState
from .link import Link
from .state import NodeState

log = logging.getLogger(__name__)

# How long a node waits for another that holds a schedule's lock (a tick's publish and
# record take a few ms): past it the other node is left to do the work.
LOCK_WAIT_S = 5.0
LOCK_RETRY_S = 0.02


def record_queue(name: str) -> str:
    return f"spool.schedule.{name}"


def lock_queue(name: str) -> str:
    return f"spool.schedule.{name}.lock"


class _Record(msgspec.Struct):
    last_run: datetime | None = None
    paused: bool = False


class AmqpScheduleStore:
    def __init__(self, state: NodeState) -> None:
        self._state = state

    async def load(self, names: list[str]) -> dict[str, ScheduleState]:
        link = await self._state.usable_link()
        async with self._channel(link) as channel:
            for name in names:
                await channel.declare_queue(
                    record_queue(name), durable=True, arguments={"x-max-length": 1}
                )
        return {name: await self.read(name) for name in names}

    async def read(self, name: str) -> ScheduleState:
        # Under the lock, as every write is: a record a reader held unacked was invisible to
        # a writer's take, which then wrote a fresh record over it (a pause that forgot the
        # last run), and the reader's copy came back beside it.
        async with self._locked(name) as (_link, channel):
            found = await self._peek(channel, name)
        return found or ScheduleState()

    async def fire(self, name: str, tick: datetime, publish: Publish) -> ScheduleState:
        async with self._locked(name) as (link, channel):
            record, held = await self._take(channel, name)
            if record.paused or (record.last_run is not None and tick <= record.last_run):
                await _release(held, requeue=True)
                return ScheduleState(record.last_run, record.paused)
            await publish()
            record.last_run = tick
            await self._replace(link, name, record, held)
            return ScheduleState(record.last_run, record.paused)

    async def set_paused(self, name: str, paused: bool) -> ScheduleState:
        async with self._locked(name) as (link, channel):
            record, held = await self._take(channel, name)
            record.paused = paused
            await self._replace(link, name, record, held)
            return ScheduleState(record.last_run, record.paused)

    # ------------------------------------------------------------------ the parts
    @contextlib.asynccontextmanager
    async def _channel(self, link: Link) -> AsyncIterator[AbstractChannel]:
        channel = await link.connection.channel(publisher_confirms=False)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    @contextlib.asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[tuple[Link, AbstractChannel]]:
        """The schedule's lock, on a channel of its own (a refused declare closes it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        while True:
            link = await self._state.usable_link()
            channel = await link.connection.channel(publisher_confirms=False)
            try:
                await channel.declare_queue(lock_queue(name), exclusive=True, auto_delete=True)
            except aiormq.exceptions.ChannelLockedResource:
                if loop.time() >= deadline:
                    raise Unavailable(
                        f"schedule {name!r} is held by another node; try again", retry_after=1
                    ) from None
                await asyncio.sleep(LOCK_RETRY_S)
                continue
            break
        try:
            yield link, channel
        finally:
            try:
                await channel.queue_delete(lock_queue(name))
            finally:
                if not channel.is_closed:
                    await channel.close()

    async def _peek(self, channel: AbstractChannel, name: str) -> ScheduleState | None:
        """The record, put back at once; None when there is none. Only under the lock."""
        queue = await channel.declare_queue(record_queue(name), passive=True)
        got = await queue.get(no_ack=False, fail=False)
        if got is None:
            return None
        record = _decode(name, got.body)
        await got.nack(requeue=True)
        return ScheduleState(record.last_run, record.paused)

    async def _take(
        self, channel: AbstractChannel, name: str
    ) -> tuple[_Record, list[AbstractIncomingMessage]]:
        """The record, held unacked until the next one is written (_replace). Normally one
        message; two after a node died between writing a record and acking the one before
        (the old one is back at the head): the last is the newest."""
        queue = await channel.declare_queue(record_queue(name), passive=True)
        held = []
        while (got := await queue.get(no_ack=False, fail=False)) is not None:
            held.append(got)
        return (_decode(name, held[-1].body) if held else _Record()), held

    async def _replace(
        self, link: Link, name: str, record: _Record, held: list[AbstractIncomingMessage]
    ) -> None:
        """Write the new record (confirmed), then ack the old: a death in between leaves
        both, never neither."""
        await link.publish(record_queue(name), msgspec.json.encode(record))
        await _release(held, requeue=False)


async def _release(held: list[AbstractIncomingMessage], *, requeue: bool) -> None:
    for got in held:
        if requeue:
            await got.nack(requeue=True)
        else:
            await got.ack()


def _decode(name: str, body: bytes) -> _Record:
    try:
        return msgspec.json.decode(body, type=_Record)
    except msgspec.DecodeError:
        log.warning("ignoring an unreadable state of schedule %r", name)
        return _Record()
