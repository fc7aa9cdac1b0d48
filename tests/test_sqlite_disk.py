"""The sqlite journal's file: a full disk, a read-only file, one node per file, bounded size."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service import Settings
from service.broker.local import LocalBroker
from service.broker.sqlite import SqliteJournal
from service.broker.sqlite_store import unavailable
from service.errors import StartupError

from .conftest import Server, client_for, running, toml_config
from .journal_tools import count_rows

Q = "/v1/queues/work/messages"
PROBLEM = "application/problem+json"


def page_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    return count


async def eventually(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_a_full_disk_answers_503_stores_nothing_and_recovers(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo"}}, broker={"backend": "sqlite"}
    )
    path = Path(settings.broker.sqlite_path)
    # Another tenant of the disk: 2 MiB that the test frees later ("space returns").
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE filler (b BLOB)")
        conn.execute("INSERT INTO filler VALUES (zeroblob(2 * 1024 * 1024))")
    conn.close()
    async with running(settings) as runtime:
        await runtime.broker.pause("work")  # the pause is journaled; nothing will run
    # The disk: what the file holds now plus about 30 pages.
    journal = SqliteJournal(path, max_pages=page_count(path) + 30)
    broker = LocalBroker(settings.queues, settings.results, storage=journal)
    accepted: list[str] = []
    async with client_for(settings, broker) as (client, _):
        body = {"body": "x" * 3000}
        for _attempt in range(300):
            r = await client.post(Q, json=body)
            if r.status_code != 202:
                break
            accepted.append((await r.get_json())["id"])
        assert accepted, "not one publish fitted"
        assert r.status_code == 503 and r.content_type == PROBLEM
        assert r.headers["Retry-After"] == "1"
        assert "SQLITE_FULL" in (await r.get_json())["detail"]
        batch = await client.post(f"{Q}/batch", json={"messages": [body] * 3})
        assert batch.status_code == 503
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        backend = (await ready.get_json())["checks"]["backend"]
        assert backend["ok"] is False and "SQLITE_FULL" in backend["error"]
        stats = await (await client.get("/v1/queues/work")).get_json()
        assert stats["depth"]["queued"] == len(accepted)  # nothing half-taken in memory
        with sqlite3.connect(path, timeout=10) as conn:
            conn.execute("DELETE FROM filler")
        conn.close()
        await eventually(lambda: broker.health()["ok"] is True)
        assert (await client.get("/readyz")).status_code == 200
        r = await client.post(Q, json=body)
        assert r.status_code == 202
        accepted.append((await r.get_json())["id"])
    # Exactly the acknowledged messages are on disk: none of the 503s slipped in.
    async with client_for(settings) as (client, runtime):
        stats = await (await client.get("/v1/queues/work")).get_json()
        assert stats["paused"] and stats["depth"]["queued"] == len(accepted)
        for mid in accepted:
            assert (await runtime.broker.get(mid)) is not None
    assert count_rows(path) == len(accepted)


def test_a_read_only_file_maps_to_503_with_retry_after(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as info:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    error = unavailable(info.value, path)
    assert error.status == 503
    assert error.retry_after == 1 and "SQLITE_READONLY" in error.detail


async def test_a_second_journal_on_the_same_file_is_refused(tmp_path: Path) -> None:
    first = SqliteJournal(tmp_path / "spool.db")
    await first.open()
    try:
        second = SqliteJournal(tmp_path / "spool.db")
        with pytest.raises(StartupError, match=r"in use by another Spool process \(pid \d+\)"):
            await second.open()
    finally:
        await first.close([], [])
    third = SqliteJournal(tmp_path / "spool.db")  # released at close: the next one may open
    assert await third.open() == []
    await third.close([], [])


def test_a_second_server_on_the_same_file_exits_with_a_clear_line(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    config = toml_config(
        tmp_path, '[queues.work]\nhandler = "tests.handlers:echo"\n', 'backend = "sqlite"'
    )
    first = server_factory(config)
    first.start()
    second = server_factory(config)
    second.start(wait_ready=False)
    assert second.wait_exit(30) == 2
    assert "in use by another Spool process" in second.log()
    assert first.stop() == 0


async def test_retention_keeps_the_file_bounded_under_steady_load(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo", "concurrency": 4}},
        broker={"backend": "sqlite"},
        results={"max_entries": 50},
    )
    path = Path(settings.broker.sqlite_path)
    sizes: list[int] = []
    async with client_for(settings) as (client, runtime):
        for _round in range(5):
            envelopes: list[dict[str, Any]] = [{"body": "y" * 2000} for _ in range(200)]
            r = await client.post(f"{Q}/batch", json={"messages": envelopes})
            ids = [m["id"] for m in (await r.get_json())["messages"]]
            for mid in ids:
                await runtime.broker.wait(mid, 30)
            await eventually(lambda: count_rows(path) <= 50)
            sizes.append(page_count(path))
    # 1000 messages went through; the file holds the newest 50 and stays about its size.
    assert sizes[-1] <= sizes[0] * 1.5 + 64, sizes


async def test_expired_results_leave_the_file_and_a_burst_is_given_back(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:echo", "concurrency": 4}},
        broker={"backend": "sqlite"},
        results={"ttl_s": 1},
    )
    path = Path(settings.broker.sqlite_path)
    async with client_for(settings) as (client, runtime):
        await runtime.broker.pause("work")
        for _batch in range(8):
            envelopes = [{"body": "z" * 4000} for _ in range(200)]
            r = await client.post(f"{Q}/batch", json={"messages": envelopes})
            assert r.status_code == 202
        peak = page_count(path)
        await runtime.broker.resume("work")
        await eventually(lambda: count_rows(path) == 0)
        # incremental_vacuum returns the burst's pages to the file system.
        await eventually(lambda: page_count(path) < peak / 2)


async def test_a_read_only_journal_changes_nothing_and_recovers(
    tmp_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = tmp_settings(
        {
            "work": {"handler": "tests.handlers:fail", "max_retries": 0, "concurrency": 1},
            "held": {"handler": "tests.handlers:echo", "concurrency": 1},
        },
        broker={"backend": "sqlite"},
    )
    async with client_for(settings) as (client, runtime):
        broker = runtime.broker
        assert isinstance(broker, LocalBroker)
        journal = broker.storage
        assert isinstance(journal, SqliteJournal)
        await client.post("/v1/queues/held/pause")
        queued = (
            await (await client.post("/v1/queues/held/messages", json={"body": 1})).get_json()
        )["id"]
        r = await client.post("/v1/queues/held/messages", json={"body": 2, "delay_s": 3600})
        scheduled = (await r.get_json())["id"]
        dead = (await (await client.post("/v1/queues/work/messages", json={"body": 3})).get_json())[
            "id"
        ]
        await broker.wait(dead, 20)

        async def read_only(on: bool) -> None:
            # The file turns read-only under the running service (as root, chmod would not).
            sql = f"PRAGMA query_only = {int(on)}"
            await journal._call(lambda: journal._store.conn.execute(sql))

        await read_only(True)
        r = await client.post("/v1/queues/held/messages", json={"body": 4})
        assert r.status_code == 503 and "SQLITE_READONLY" in (await r.get_json())["detail"]
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.delete(f"/v1/messages/{scheduled}")).status_code == 503
        assert (await client.post("/v1/queues/held/resume")).status_code == 503
        assert (await client.post("/v1/queues/work/pause")).status_code == 503
        assert (await client.post("/v1/queues/work/dead/redrive", json={})).status_code == 503
        assert (await broker.get(scheduled)).status.value == "scheduled"  # type: ignore[union-attr]
        assert (await broker.stats("held")).paused and not (await broker.stats("work")).paused
        assert (await broker.stats("work")).depth["dead"] == 1
        # A consumer that cannot commit "running" gives the message back untouched: once it
        # has tried twice (its second try took the message the first one gave back).
        broker.queue("held").unpaused.set()
        take_failed = "taking from queue 'held' failed"
        await eventually(lambda: caplog.text.count(take_failed) >= 2)
        msg = await broker.get(queued)
        assert msg is not None and msg.status.value == "queued" and msg.attempts == 0

        await read_only(False)
        await eventually(lambda: journal.health()["ok"] is True)
        done = await broker.wait(queued, 20)
        assert done is not None and done.status.value == "succeeded" and done.attempts == 1
        assert (await client.delete(f"/v1/messages/{scheduled}")).status_code == 200
        r = await client.post("/v1/queues/work/dead/redrive", json={})
        assert (await r.get_json())["redriven"] == 1


async def test_the_journal_makes_its_directory_and_names_the_key_when_it_cannot(
    tmp_path: Path,
) -> None:
    journal = SqliteJournal(tmp_path / "a" / "b" / "spool.db")
    assert await journal.open() == []
    await journal.close([], [])
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StartupError, match=r"^broker\.sqlite_path: cannot use"):
        await SqliteJournal(tmp_path / "file" / "spool.db").open()
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StartupError, match=r"^broker\.sqlite_path: cannot open .* journal"):
        await SqliteJournal(tmp_path / "junk.db").open()
