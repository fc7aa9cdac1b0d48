"""The local broker over its storage: where nothing is committed between start and stop (the
memory backend), every change is applied in the call that makes it, with no await that
yields and no task; where the storage commits (sqlite), a change waits for its commit."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from service.broker.base import Failed, Succeeded
from service.broker.commits import ApplyAtOnce, CommitThenApply
from service.broker.local import LocalBroker
from service.broker.sqlite import SqliteJournal
from service.broker.storage import NoStorage, SnapshotStorage
from service.config import QueueSettings, ResultsSettings
from service.model import Envelope, ErrorInfo, Message, Status

from .journal_tools import count_rows, eventually, writer_held, writes_waiting

_T = TypeVar("_T")


def broker(storage: NoStorage | SnapshotStorage | SqliteJournal | None = None) -> LocalBroker:
    queues = {"q": QueueSettings(handler="tests.handlers:echo", max_retries=1)}
    return LocalBroker(queues, ResultsSettings(), storage=storage)


def envelope(**kw: object) -> Envelope:
    return msgspec.convert({"body": msgspec.Raw(b"1"), **kw}, Envelope)


def status_of(msg: Message) -> Status:
    return msg.status


def in_one_step(coro: Coroutine[Any, Any, _T]) -> _T:
    """The coroutine's result, asserting it finished without once yielding to the loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the change awaited something: it did not apply in one step")


async def test_without_a_storage_that_commits_every_change_applies_in_one_step() -> None:
    b = broker()
    tasks = len(asyncio.all_tasks())
    (first, second, third) = [
        p.message for p in in_one_step(b.publish("q", [envelope(), envelope(), envelope()]))
    ]
    taken = in_one_step(b.take("q"))
    assert taken is first and taken.status is Status.RUNNING
    done = in_one_step(b.finish(taken, Failed(ErrorInfo("E", "no"))))
    assert done.outcome == "retried" and first.status is Status.RETRYING
    assert in_one_step(b.take("q")) is second
    in_one_step(b.interrupt(second))
    assert second.status is Status.QUEUED
    assert in_one_step(b.cancel(third.id)) is third and third.status is Status.CANCELLED
    again = in_one_step(b.take("q"))
    assert again is second
    in_one_step(b.finish(again, Succeeded(b"2")))
    in_one_step(b.pause("q"))
    in_one_step(b.resume("q"))
    assert len(asyncio.all_tasks()) == tasks  # and no task was started for any of it


async def test_the_storage_decides_how_every_change_is_made(tmp_path: Path) -> None:
    assert isinstance(broker()._commits, ApplyAtOnce)
    assert isinstance(broker(SnapshotStorage(tmp_path / "s.jsonl"))._commits, ApplyAtOnce)
    journal = SqliteJournal(tmp_path / "spool.db")
    journaled = broker(journal)
    assert isinstance(journaled._commits, CommitThenApply)
    await journaled.start()
    try:
        (published,) = await journaled.publish("q", [envelope()])
        async with writer_held(journal):
            taken = asyncio.ensure_future(journaled.take("q"))
            await eventually(lambda: writes_waiting(journal) == 1)
            # `running` waits for its commit: not applied before it
            assert published.message.status is Status.QUEUED and not taken.done()
        assert await taken is published.message
        assert status_of(published.message) is Status.RUNNING
    finally:
        await journaled.close()


async def test_results_past_a_lowered_max_entries_leave_the_journal(tmp_path: Path) -> None:
    """A restart with a lower results.max_entries leaves more results than the bound: the
    upkeep deletes the excess. Its retention commit must not also count those same results
    as evictions of its own (a result claimed twice left claims behind that kept the excess,
    and the stop, waiting forever)."""
    path = tmp_path / "spool.db"
    queues = {"q": QueueSettings(handler="tests.handlers:echo")}
    first = LocalBroker(queues, ResultsSettings(max_entries=10), storage=SqliteJournal(path))
    await first.start()
    for _ in range(10):
        await first.publish("q", [envelope()])
        await first.finish(await first.take("q"), Succeeded(b"1"))
    await first.close()

    second = LocalBroker(queues, ResultsSettings(max_entries=4), storage=SqliteJournal(path))
    await second.start()
    upkeep = asyncio.ensure_future(second.run())
    try:
        await eventually(lambda: count_rows(path) == 4)
        await eventually(lambda: not second._commits.claims)
        assert len(second._state.finals) == 4
    finally:
        upkeep.cancel()
        await second.close()
