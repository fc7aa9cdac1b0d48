"""The runtime's stop (Runtime._stop), in process: the owned tasks end before the broker
closes, and none of them can hold the stop past its bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import msgspec

from service import Runtime, Settings
from service.broker import Broker, create_broker
from service.broker.base import Finished, Outcome
from service.broker.local import LocalBroker
from service.broker.sqlite import SqliteJournal
from service.model import Envelope, Message, Status
from service.tasks import TaskOwner

from .journal_tools import Gate, disk_status
from .waits import until

# A stop's whole bound is graceful_timeout_s + 5 s; a test waits no longer than this for it.
STOP_DEADLINE_S = 30


class Hooked:
    """A real broker (create_broker) with hooks on the calls a stop makes: everything else
    goes straight through."""

    def __init__(self, inner: Broker) -> None:
        self._inner = inner
        self.calls: list[str] = []
        self.finishing = asyncio.Event()  # finish() has begun
        self.interrupting = asyncio.Event()  # interrupt() has begun
        self.finish_gate: asyncio.Event | None = None  # finish() waits for it, when set
        self.interrupt_gate: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        self.finishing.set()
        if self.finish_gate is not None:
            await self.finish_gate.wait()
        finished = await self._inner.finish(message, outcome)
        self.calls.append("finished")
        return finished

    async def interrupt(self, message: Message) -> None:
        self.interrupting.set()
        if self.interrupt_gate is not None:
            await self.interrupt_gate.wait()
        await self._inner.interrupt(message)
        self.calls.append("interrupted")

    async def close(self) -> None:
        self.calls.append("closed")
        await self._inner.close()


class ClosingSeen(TaskOwner):
    """A TaskOwner that says when the stop has come to close it."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = asyncio.Event()

    async def close(self, grace_s: float, settle_s: float) -> None:
        self.closing.set()
        await super().close(grace_s, settle_s)


@asynccontextmanager
async def started(runtime: Runtime) -> AsyncIterator[asyncio.Task[None]]:
    run = asyncio.create_task(runtime.run())
    await until(lambda: runtime.ready.is_set() or run.done(), "ready")
    try:
        yield run
    finally:
        runtime.request_stop()
        runtime.request_stop()
        await asyncio.wait_for(run, STOP_DEADLINE_S)


async def publish_one(runtime: Runtime, queue: str) -> str:
    (published,) = await runtime.broker.publish(queue, [Envelope(body=msgspec.Raw(b"1"))])
    return published.message.id


async def test_an_outcome_in_flight_when_its_consumer_is_cancelled_lands_before_the_broker_closes(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings({"q": {"handler": "tests.handlers:echo", "concurrency": 1}})
    broker, owner = Hooked(create_broker(settings)), ClosingSeen()
    # The outcome's write waits until the stop has cancelled the consumer and come to the
    # owned tasks: before there was an owner, nothing waited for it and the broker closed
    # first, so the outcome was lost.
    broker.finish_gate = owner.closing
    runtime = Runtime(settings, broker=cast(Broker, broker), tasks=owner)
    async with started(runtime):
        mid = await publish_one(runtime, "q")
        await asyncio.wait_for(broker.finishing.wait(), STOP_DEADLINE_S)
    assert broker.calls == ["finished", "closed"]
    assert runtime.live_consumers("q") == 0 and len(owner) == 0
    message = await broker._inner.get(mid)
    assert message is not None and message.status is Status.SUCCEEDED


async def test_a_give_back_that_never_ends_does_not_hold_up_the_stop(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:async_sleep", "mode": "async", "concurrency": 1}}
    )
    broker = Hooked(create_broker(settings))
    broker.interrupt_gate = asyncio.Event()  # never set: the give-back never ends
    runtime = Runtime(settings, broker=cast(Broker, broker))
    async with started(runtime):
        await runtime.broker.publish("q", [Envelope(body=msgspec.Raw(b'{"seconds": 3600}'))])
        await until(lambda: runtime.running == 1, "the handler running")
    # The stop cut the give-back short (it ended within its bound: started() waited for it)
    # and still closed the broker, which keeps the message for the next start.
    assert broker.interrupting.is_set()
    assert broker.calls == ["closed"]
    assert runtime.stopped.is_set() and len(runtime.tasks) == 0


async def test_a_commit_under_way_at_the_stop_is_an_owned_task_that_lands_before_the_close(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:echo", "concurrency": 1}}, broker={"backend": "sqlite"}
    )
    owner = ClosingSeen()
    runtime = Runtime(settings, tasks=owner)
    async with started(runtime):
        journal = cast(SqliteJournal, cast(LocalBroker, runtime.broker).storage)
        gate = Gate(journal)  # the writer thread is busy, as with a slow fsync
        await until(gate.entered.is_set, "the writer held")
        publishing = asyncio.create_task(publish_one(runtime, "q"))
        # The publish's commit is the runtime's to await: before, it was the broker's own
        # task and the stop waited for it in a separate wait of the broker's close.
        await until(lambda: len(owner) == 1, "the commit owned by the runtime")
        runtime.request_stop()
        runtime.request_stop()
        await asyncio.wait_for(owner.closing.wait(), STOP_DEADLINE_S)
        await gate.open()  # the stop has come to the owned tasks: the write lands
        mid = await publishing
    assert len(owner) == 0
    assert disk_status(Path(settings.broker.sqlite_path), mid) == "queued"
