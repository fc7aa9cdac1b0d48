"""Claims on the sqlite backend: a transition checks and claims its message in one step,
and the others leave a claimed message alone until its commit lands or fails. Also the
transitions nobody requests (a retry coming due, retention) and pause follow the rule:
commit, then visible."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service import Settings
from service.broker import MemoryBroker
from service.broker.base import Failed, Succeeded
from service.broker.sqlite import SqliteJournal
from service.errors import Conflict, Unavailable
from service.model import ErrorInfo, Status

from .journal_tools import (
    disk_status,
    eventually,
    publish,
    read_only,
    sqlite_broker,
    writer_held,
    writes_waiting,
)


@pytest.fixture
async def held(
    tmp_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[MemoryBroker, SqliteJournal]]:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo"}}, broker={"backend": "sqlite"}
    )
    async with sqlite_broker(settings) as pair:
        yield pair


async def test_a_take_skips_a_message_whose_cancel_is_committing(
    held: tuple[MemoryBroker, SqliteJournal],
) -> None:
    broker, journal = held
    first, second = await publish(broker, 2)
    async with writer_held(journal):
        cancel = asyncio.ensure_future(broker.cancel(first.id))
        await eventually(lambda: writes_waiting(journal) == 1)
        take = asyncio.ensure_future(broker.take("work"))
        await eventually(lambda: writes_waiting(journal) == 2)
    assert (await cancel).status is Status.CANCELLED
    assert await take is second and first.status is Status.CANCELLED


async def test_a_cancel_that_fails_to_commit_gives_the_message_back_to_takers(
    held: tuple[MemoryBroker, SqliteJournal],
) -> None:
    broker, journal = held
    (msg,) = await publish(broker)
    line = broker.queue("work").ready
    await read_only(journal, True)
    async with writer_held(journal):
        cancel = asyncio.ensure_future(broker.cancel(msg.id))
        await eventually(lambda: writes_waiting(journal) == 1)
        take = asyncio.ensure_future(broker.take("work"))
        await eventually(lambda: len(line) == 0)  # popped, and passed over
        take.cancel()
    with pytest.raises(Unavailable):
        await cancel
    assert msg.status is Status.QUEUED and len(line) == 1
    await read_only(journal, False)
    await eventually(lambda: journal.health()["ok"] is True)
    assert await broker.take("work") is msg


async def test_a_cancel_meeting_a_take_that_commits_answers_409(
    held: tuple[MemoryBroker, SqliteJournal],
) -> None:
    broker, journal = held
    (msg,) = await publish(broker)
    async with writer_held(journal):
        take = asyncio.ensure_future(broker.take("work"))
        await eventually(lambda: writes_waiting(journal) == 1)
        cancel = asyncio.ensure_future(broker.cancel(msg.id))
    assert await take is msg
    with pytest.raises(Conflict, match="running; it cannot be cancelled"):
        await cancel
    assert msg.status is Status.RUNNING


async def test_a_due_retry_is_queued_only_once_it_is_committed(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo", "retry_backoff_s": 60}},
        broker={"backend": "sqlite"},
    )
    clock = [1000.0]
    journal = SqliteJournal(Path(settings.broker.sqlite_path))
    broker = MemoryBroker(
        settings.queues, settings.results, journal=journal, clock=lambda: clock[0]
    )
    await broker.start()
    scheduler = asyncio.ensure_future(broker.run())
    try:
        (msg,) = await publish(broker)
        await broker.take("work")
        await broker.finish(msg, Failed(ErrorInfo("ValueError", "no")))
        assert msg.status is Status.RETRYING
        async with writer_held(journal):
            clock[0] += 3600
            broker.wake()
            await eventually(lambda: writes_waiting(journal) == 1)
            assert msg.status is Status.RETRYING
            assert (await broker.stats("work")).depth["queued"] == 0
        await eventually(lambda: msg.status is Status.QUEUED)
        assert disk_status(Path(settings.broker.sqlite_path), msg.id) == "queued"
    finally:
        scheduler.cancel()
        await broker.close()


async def test_retention_drops_a_result_only_once_its_delete_is_committed(
    tmp_settings: Callable[..., Settings],
) -> None:
    """The result that max_entries evicts is deleted in the commit of the outcome that
    evicts it: while that commit waits, the old result is still readable, in memory and on
    disk; once it lands, the new result shows and the old one is gone, in one step."""
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo"}},
        broker={"backend": "sqlite"},
        results={"max_entries": 1},
    )
    path = Path(settings.broker.sqlite_path)
    async with sqlite_broker(settings) as (broker, journal):
        scheduler = asyncio.ensure_future(broker.run())
        try:
            older, newer = await publish(broker, 2)
            for _ in (older, newer):
                await broker.take("work")
            await broker.finish(older, Succeeded(b"1"))
            async with writer_held(journal):
                finishing = asyncio.ensure_future(broker.finish(newer, Succeeded(b"2")))
                await eventually(lambda: writes_waiting(journal) == 1)
                assert await broker.get(older.id) is older
                assert disk_status(path, older.id) == "succeeded"
                assert newer.status is Status.RUNNING
            await finishing
            assert broker._messages.get(older.id) is None
            assert disk_status(path, older.id) is None
            shown = await broker.get(newer.id)
            assert shown is newer and shown.status is Status.SUCCEEDED
        finally:
            scheduler.cancel()


async def test_a_pause_takes_effect_only_once_it_is_committed(
    held: tuple[MemoryBroker, SqliteJournal],
) -> None:
    broker, journal = held
    async with writer_held(journal):
        pausing = asyncio.ensure_future(broker.pause("work"))
        await eventually(lambda: writes_waiting(journal) == 1)
        assert not (await broker.stats("work")).paused
    assert (await pausing).paused
    await read_only(journal, True)
    with pytest.raises(Unavailable):
        await broker.resume("work")
    assert (await broker.stats("work")).paused
    assert journal.paused_queues() == ["work"]
