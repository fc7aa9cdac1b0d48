"""One rule on the sqlite backend: a change is visible only once the journal committed it.

Each test holds the journal's writer thread (as a slow fsync would) or makes the file
read-only under the running service (as tests/test_sqlite_disk.py does), and looks at what
GET, long-poll waiters and event listeners see meanwhile: a consumer's take, its outcome,
and a graceful stop giving the message back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service import Settings
from service.broker import MemoryBroker
from service.broker.base import Failed, Succeeded
from service.broker.sqlite import SqliteJournal
from service.errors import Unavailable
from service.model import ErrorInfo, Status

from .conftest import client_for
from .journal_tools import (
    Seen,
    disk_status,
    eventually,
    publish,
    read_only,
    sqlite_broker,
    writer_held,
    writes_waiting,
)


@pytest.fixture
def settings(tmp_settings: Callable[..., Settings]) -> Settings:
    return tmp_settings(
        {"work": {"handler": "tests.handlers:echo", "max_retries": 2}},
        broker={"backend": "sqlite"},
    )


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
async def held(settings: Settings, seen: Seen) -> AsyncIterator[tuple[MemoryBroker, SqliteJournal]]:
    async with sqlite_broker(settings) as (broker, journal):
        broker.listen(lambda msgs: seen.extend((m.id, m.status) for m in msgs))
        yield broker, journal


async def test_a_take_shows_running_only_once_it_is_committed(
    held: tuple[MemoryBroker, SqliteJournal], seen: Seen
) -> None:
    broker, journal = held
    (msg,) = await publish(broker)
    seen.clear()
    async with writer_held(journal):
        take = asyncio.ensure_future(broker.take("work"))
        await eventually(lambda: writes_waiting(journal) == 1)
        shown = await broker.get(msg.id)
        assert shown is not None and (shown.status, shown.attempts) == (Status.QUEUED, 0)
        assert (await broker.stats("work")).depth["running"] == 0
        assert seen == [] and not take.done()
    taken = await take
    assert taken is msg and (msg.status, msg.attempts) == (Status.RUNNING, 1)
    assert seen == [(msg.id, Status.RUNNING)]


async def test_a_finish_shows_its_outcome_only_once_it_is_committed(
    held: tuple[MemoryBroker, SqliteJournal], seen: Seen
) -> None:
    broker, journal = held
    ok, retried = await publish(broker, 2)
    await broker.take("work")
    await broker.take("work")
    seen.clear()
    waiter = asyncio.ensure_future(broker.wait(ok.id, 30))
    async with writer_held(journal):
        finishes = asyncio.gather(
            broker.finish(ok, Succeeded(b'"r"')),
            broker.finish(retried, Failed(ErrorInfo("ValueError", "no"))),
        )
        await eventually(lambda: writes_waiting(journal) == 2)
        for msg in (ok, retried):
            assert (msg.status, msg.result, msg.error, msg.failures) == (
                Status.RUNNING,
                None,
                None,
                0,
            )
        stats = await broker.stats("work")
        assert stats.depth["running"] == 2 and stats.counts.succeeded == stats.counts.retried == 0
        assert seen == [] and not waiter.done()
    outcomes = await finishes
    assert [f.outcome for f in outcomes] == ["succeeded", "retried"]
    assert (await waiter) is ok and ok.status is Status.SUCCEEDED and ok.result == b'"r"'
    assert retried.status is Status.RETRYING and retried.failures == 1
    assert seen == [(ok.id, Status.SUCCEEDED), (retried.id, Status.RETRYING)]


async def test_an_interrupt_gives_the_message_back_only_once_it_is_committed(
    held: tuple[MemoryBroker, SqliteJournal], seen: Seen
) -> None:
    broker, journal = held
    (msg,) = await publish(broker)
    await broker.take("work")
    seen.clear()
    async with writer_held(journal):
        interrupt = asyncio.ensure_future(broker.interrupt(msg))
        await eventually(lambda: writes_waiting(journal) == 1)
        assert msg.status is Status.RUNNING and msg.started_at is not None
        assert (await broker.stats("work")).depth == {
            "scheduled": 0,
            "queued": 0,
            "running": 1,
            "retrying": 0,
            "dead": 0,
        }
        assert seen == []
    await interrupt
    assert (msg.status, msg.attempts, msg.failures) == (Status.QUEUED, 1, 0)
    assert seen == [(msg.id, Status.QUEUED)]
    assert await broker.take("work") is msg  # back at the front of its line


async def test_an_interrupt_that_cannot_be_committed_changes_nothing(
    held: tuple[MemoryBroker, SqliteJournal], settings: Settings, seen: Seen
) -> None:
    broker, journal = held
    (msg,) = await publish(broker)
    await broker.take("work")
    seen.clear()
    await read_only(journal, True)
    with pytest.raises(Unavailable):
        await broker.interrupt(msg)
    assert msg.status is Status.RUNNING and seen == []
    assert (await broker.stats("work")).depth["queued"] == 0
    assert disk_status(Path(settings.broker.sqlite_path), msg.id) == "running"
    await read_only(journal, False)
    await eventually(lambda: journal.health()["ok"] is True)
    await broker.interrupt(msg)
    shown = await broker.get(msg.id)
    assert shown is not None and shown.status is Status.QUEUED
    assert disk_status(Path(settings.broker.sqlite_path), msg.id) == "queued"


async def test_a_finish_that_cannot_commit_shows_no_outcome_and_lands_after_recovery(
    tmp_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:wait_for_file", "concurrency": 1, "max_retries": 2}},
        broker={"backend": "sqlite"},
    )
    path, marker = Path(settings.broker.sqlite_path), tmp_path / "go"
    async with client_for(settings) as (client, runtime):
        broker = runtime.broker
        assert isinstance(broker, MemoryBroker)
        journal = broker._journal
        assert isinstance(journal, SqliteJournal)
        seen: Seen = []
        broker.listen(lambda msgs: seen.extend((m.id, m.status) for m in msgs))
        r = await client.post("/v1/queues/work/messages", json={"body": {"path": str(marker)}})
        mid = (await r.get_json())["id"]
        await eventually(lambda: disk_status(path, mid) == "running")
        await read_only(journal, True)
        marker.touch()  # the handler returns; its outcome cannot be written
        await eventually(lambda: journal.health()["ok"] is False)
        shown = await (await client.get(f"/v1/messages/{mid}")).get_json()
        assert shown["status"] == "running" and shown["result"] is None
        assert (mid, Status.SUCCEEDED) not in seen
        assert (await broker.stats("work")).counts.succeeded == 0
        assert disk_status(path, mid) == "running"
        await read_only(journal, False)  # space returns: the outcome is recorded, not lost
        done = await broker.wait(mid, 30)
        assert done is not None and done.status is Status.SUCCEEDED
        assert disk_status(path, mid) == "succeeded"
    async with client_for(settings) as (client, _):
        after = await (await client.get(f"/v1/messages/{mid}")).get_json()
        assert after["status"] == "succeeded" and after["result"] == "done"
        assert after["attempts"] == 1 and after["error"] is None


async def test_a_stop_that_cannot_write_the_give_back_still_stops(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:async_sleep", "mode": "async", "concurrency": 1}},
        broker={"backend": "sqlite"},
        server={"graceful_timeout_s": 0.2},
    )
    path = Path(settings.broker.sqlite_path)
    async with client_for(settings) as (client, runtime):
        r = await client.post("/v1/queues/work/messages", json={"body": {"seconds": 60}})
        mid = (await r.get_json())["id"]
        await eventually(lambda: disk_status(path, mid) == "running")
        assert (await client.post("/v1/queues/work/pause")).status_code == 200  # for the restart
        journal = runtime.broker._journal  # type: ignore[attr-defined]
        assert isinstance(journal, SqliteJournal)
        await read_only(journal, True)
    # Stopped (client_for waits at most 15 s): the consumer's cancellation went on although
    # the interrupt could not be written. The file still says running, and the next start
    # reads that as a death: the one case the README names.
    async with client_for(settings) as (client, _):
        msg = await (await client.get(f"/v1/messages/{mid}")).get_json()
        assert msg["status"] == "queued" and msg["attempts"] == 1
        assert msg["error"]["type"] == "ProcessDied"


async def test_a_final_outcome_evicts_past_max_entries_in_the_same_commit(
    tmp_settings: Callable[..., Settings],
) -> None:
    """results.max_entries holds the moment an outcome is visible: the oldest result goes
    in the outcome's own commit, not later in the scheduler's (a reader saw it meanwhile)."""
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo", "max_retries": 0}},
        broker={"backend": "sqlite"},
        results={"max_entries": 2},
    )
    async with sqlite_broker(settings) as (broker, _):
        msgs = await publish(broker, 4)
        for _ in range(2):
            await broker.finish(await broker.take("work"), Succeeded(b"1"))
        failed = await broker.take("work")
        await broker.finish(failed, Failed(ErrorInfo("ValueError", "no")))
        # No await between the outcome landing and the look: the scheduler cannot run.
        await broker.finish(await broker.take("work"), Succeeded(b"1"))
        assert await broker.get(msgs[0].id) is None
        assert disk_status(Path(settings.broker.sqlite_path), msgs[0].id) is None
        assert [(await broker.get(m.id)) is not None for m in msgs] == [False, True, True, True]


async def test_close_waits_for_a_take_still_committing_and_gives_it_back(
    tmp_settings: Callable[..., Settings],
) -> None:
    """A stop that comes while a take's "running" is committing (its consumer already
    cancelled) must see the take land and write the message back as queued: written over
    by nothing, the file said running and the next start counted a ProcessDied failure."""
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo", "max_retries": 0}},
        broker={"backend": "sqlite"},
    )
    path = Path(settings.broker.sqlite_path)
    journal = SqliteJournal(path)
    broker = MemoryBroker(settings.queues, settings.results, journal=journal)
    await broker.start()
    (msg,) = await publish(broker)
    async with writer_held(journal):
        take = asyncio.ensure_future(broker.take("work"))
        await eventually(lambda: writes_waiting(journal) == 1)
        take.cancel()  # the consumer goes at the stop; its commit runs to the end
        closing = asyncio.ensure_future(broker.close())
        await asyncio.sleep(0)
    await closing
    assert disk_status(path, msg.id) == "queued"
    async with sqlite_broker(settings) as (again, _):
        back = await again.get(msg.id)
        assert back is not None and back.status is Status.QUEUED and back.error is None
