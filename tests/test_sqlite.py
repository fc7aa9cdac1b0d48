"""The sqlite backend in process: commit before 202, recovery of every status, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service import Settings
from service.broker.records import encode_message
from service.broker.sqlite import SqliteJournal
from service.errors import StartupError
from service.model import ErrorInfo, Message, Status, new_id

from .conftest import client_for, running

Q = "/v1/queues/work/messages"


def sqlite_settings(tmp_settings: Callable[..., Settings], **queue: Any) -> Settings:
    table = {"handler": "tests.handlers:echo", "concurrency": 2, "max_retries": 2, **queue}
    return tmp_settings({"work": table}, broker={"backend": "sqlite"})


def rows(path: Path) -> dict[str, str]:
    """id → status as a separate reader sees the file (what a crash would leave)."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, status FROM messages").fetchall())


async def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_publish_is_on_disk_when_the_202_arrives(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = sqlite_settings(tmp_settings)
    path = Path(settings.broker.sqlite_path)
    async with client_for(settings) as (client, runtime):
        await runtime.broker.pause("work")
        r = await client.post(Q, json={"body": {"n": 1}})
        assert r.status_code == 202
        mid = (await r.get_json())["id"]
        assert rows(path)[mid] == "queued"
        batch = await client.post(f"{Q}/batch", json={"messages": [{"body": i} for i in range(5)]})
        assert batch.status_code == 202
        ids = [m["id"] for m in (await batch.get_json())["messages"]]
        assert all(rows(path)[i] == "queued" for i in ids)
        ready = await client.get("/readyz")
        assert (await ready.get_json())["checks"]["backend"] == {"ok": True, "backend": "sqlite"}


async def test_messages_results_and_pause_survive_a_restart(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = sqlite_settings(tmp_settings)
    async with client_for(settings) as (client, runtime):
        r = await client.post(Q, json={"body": {"x": 1}, "idempotency_key": "k1"})
        done_id = (await r.get_json())["id"]
        await runtime.broker.wait(done_id, 20)
        await runtime.broker.pause("work")
        r = await client.post(Q, json={"body": {"x": 2}, "priority": 3})
        waiting_id = (await r.get_json())["id"]
    async with client_for(settings) as (client, runtime):
        done = await (await client.get(f"/v1/messages/{done_id}")).get_json()
        assert done["status"] == "succeeded" and done["result"] == {"x": 1}
        waiting = await (await client.get(f"/v1/messages/{waiting_id}")).get_json()
        assert waiting["status"] == "queued" and waiting["priority"] == 3
        stats = await (await client.get("/v1/queues/work")).get_json()
        assert stats["paused"] is True and stats["depth"]["queued"] == 1
        again = await client.post(Q, json={"body": {"other": True}, "idempotency_key": "k1"})
        assert again.status_code == 200 and (await again.get_json())["id"] == done_id
        await client.post("/v1/queues/work/resume")
        msg = await runtime.broker.wait(waiting_id, 20)
        assert msg is not None and msg.status is Status.SUCCEEDED


def crash_image(path: Path, messages: list[Message], paused: list[str]) -> None:
    """The journal as a kill -9 leaves it: rows written, nothing tidied up at stop."""
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO messages (id, queue, status, record) VALUES (?, ?, ?, ?)",
            [(m.id, m.queue, m.status.value, encode_message(m)) for m in messages],
        )
        conn.executemany("INSERT INTO paused (queue) VALUES (?)", [(q,) for q in paused])
    conn.close()


def message(status: Status, **fields: Any) -> Message:
    return Message(
        id=new_id(),
        queue="work",
        status=status,
        body=b'{"n":1}',
        headers={},
        priority=0,
        created_at=time.time() - 10,
        **fields,
    )


async def test_every_status_comes_back_after_a_crash(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = sqlite_settings(tmp_settings, max_retries=2)
    path = Path(settings.broker.sqlite_path)
    async with running(settings):
        pass  # creates the schema
    later = time.time() + 3600
    err = ErrorInfo("ValueError", "boom")
    msgs = {
        "queued": message(Status.QUEUED, idempotency_key="kq"),
        "scheduled": message(Status.SCHEDULED, scheduled_for=later),
        "retrying": message(Status.RETRYING, scheduled_for=later, attempts=1, failures=1),
        "running": message(Status.RUNNING, attempts=1, started_at=time.time() - 1),
        "running_last": message(Status.RUNNING, attempts=3, failures=2, started_at=time.time()),
        "succeeded": message(Status.SUCCEEDED, attempts=1, result=b'"ok"', finished_at=time.time()),
        "failed": message(
            Status.FAILED, attempts=3, failures=3, error=err, finished_at=time.time()
        ),
        "cancelled": message(Status.CANCELLED, finished_at=time.time()),
    }
    crash_image(path, list(msgs.values()), paused=["work"])
    async with client_for(settings) as (client, runtime):

        async def get(name: str) -> dict[str, Any]:
            doc: dict[str, Any] = await (
                await client.get(f"/v1/messages/{msgs[name].id}")
            ).get_json()
            return doc

        assert (await get("queued"))["status"] == "queued"
        assert (await get("scheduled"))["status"] == "scheduled"
        retrying = await get("retrying")
        assert retrying["status"] == "retrying" and retrying["attempts"] == 1
        # A death while running is a failed attempt: counted, and run again...
        running_ = await get("running")
        assert running_["status"] == "queued" and running_["attempts"] == 1
        assert running_["error"]["type"] == "ProcessDied"
        # ...until it was the last one the retries allowed: then it is a dead letter.
        last = await get("running_last")
        assert last["status"] == "failed" and last["error"]["type"] == "ProcessDied"
        assert (await get("succeeded"))["result"] == "ok"
        assert (await get("cancelled"))["status"] == "cancelled"
        dead = await (await client.get("/v1/queues/work/dead")).get_json()
        # Newest first: the one whose death was counted at this start leads.
        assert [m["id"] for m in dead["messages"]] == [msgs["running_last"].id, msgs["failed"].id]
        stats = await (await client.get("/v1/queues/work")).get_json()
        assert stats["paused"] is True
        assert stats["depth"] == {
            "scheduled": 1,
            "queued": 2,
            "running": 0,
            "retrying": 1,
            "dead": 2,
        }
        again = await client.post(Q, json={"body": 1, "idempotency_key": "kq"})
        assert again.status_code == 200 and (await again.get_json())["id"] == msgs["queued"].id
        # The recovered states are written back: a second crash does not count twice.
        assert rows(path)[msgs["running"].id] == "queued"
        assert rows(path)[msgs["running_last"].id] == "failed"
        await client.post("/v1/queues/work/resume")
        done = await runtime.broker.wait(msgs["running"].id, 20)
        assert done is not None and done.status is Status.SUCCEEDED and done.attempts == 2


async def test_a_graceful_stop_gives_running_work_back_without_a_failure(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:async_sleep", "concurrency": 1, "max_retries": 0}},
        broker={"backend": "sqlite"},
        server={"graceful_timeout_s": 0.2},
    )
    async with client_for(settings) as (client, _):
        r = await client.post(Q, json={"body": {"seconds": 30}})
        mid = (await r.get_json())["id"]
        await wait_for(lambda: rows(Path(settings.broker.sqlite_path)).get(mid) == "running")
    async with client_for(settings) as (client, _):
        msg = await (await client.get(f"/v1/messages/{mid}")).get_json()
        # max_retries = 0: one counted failure would have made it a dead letter.
        assert msg["status"] in ("queued", "running") and msg["error"] is None
        assert msg["attempts"] >= 1


async def test_concurrent_publishes_share_commits(tmp_settings: Callable[..., Settings]) -> None:
    settings = sqlite_settings(tmp_settings)
    async with client_for(settings) as (client, runtime):
        await runtime.broker.pause("work")
        journal = runtime.broker.storage  # type: ignore[attr-defined]
        assert isinstance(journal, SqliteJournal)
        before = journal.commits
        responses = await asyncio.gather(*(client.post(Q, json={"body": i}) for i in range(200)))
        assert all(r.status_code == 202 for r in responses)
        assert journal.commits - before < 150  # one fsync covered several publishes
        assert len(rows(Path(settings.broker.sqlite_path))) == 200


async def test_cancel_and_redrive_are_journaled(tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings(
        {"work": {"handler": "tests.handlers:fail", "max_retries": 0, "concurrency": 1}},
        broker={"backend": "sqlite"},
    )
    path = Path(settings.broker.sqlite_path)
    async with client_for(settings) as (client, runtime):
        r = await client.post(Q, json={"body": 1, "delay_s": 3600})
        delayed = (await r.get_json())["id"]
        assert (await client.delete(f"/v1/messages/{delayed}")).status_code == 200
        assert rows(path)[delayed] == "cancelled"
        r = await client.post(Q, json={"body": 2})
        dead = (await r.get_json())["id"]
        await runtime.broker.wait(dead, 20)
        await runtime.broker.pause("work")
        r = await client.post("/v1/queues/work/dead/redrive", json={})
        assert (await r.get_json())["redriven"] == 1
        assert rows(path)[dead] == "queued"
    async with client_for(settings) as (client, runtime):
        msg = await (await client.get(f"/v1/messages/{dead}")).get_json()
        assert msg["status"] == "queued" and msg["attempts"] == 0


async def test_sqlite_synchronous_reaches_the_connection(
    tmp_settings: Callable[..., Settings],
) -> None:
    for setting, level in (("full", 2), ("normal", 1)):
        settings = tmp_settings(
            {"work": {"handler": "tests.handlers:echo"}},
            broker={"backend": "sqlite", "sqlite_synchronous": setting},
        )
        async with running(settings) as runtime:
            journal = runtime.broker.storage  # type: ignore[attr-defined]
            assert isinstance(journal, SqliteJournal)
            conn = journal._store.conn  # used on the writer thread only, through _call

            def pragma(name: str, conn: sqlite3.Connection = conn) -> Any:
                return conn.execute(f"PRAGMA {name}").fetchone()[0]

            got = await journal._call(lambda: pragma("synchronous"))
            mode = await journal._call(lambda: pragma("journal_mode"))
            assert (got, mode) == (level, "wal")


SCHEMA_1 = (
    "CREATE TABLE messages (id TEXT PRIMARY KEY, queue TEXT NOT NULL, status TEXT NOT NULL, "
    "record BLOB NOT NULL)",
    "CREATE TABLE paused (queue TEXT PRIMARY KEY)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)",
    "PRAGMA user_version = 1",
)


async def test_a_journal_of_schema_1_opens_and_is_carried_to_schema_2(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = sqlite_settings(tmp_settings)
    path = Path(settings.broker.sqlite_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid = new_id()
    # A record exactly as Spool wrote it before expiry existed: no expires_at at all.
    old = (
        f'{{"id":"{mid}","queue":"work","status":"queued","body":{{"n":1}},"priority":0,'
        f'"created_at":{time.time()}}}'
    ).encode()
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA_1:
            conn.execute(statement)
        conn.execute("INSERT INTO paused (queue) VALUES ('work')")
        conn.execute(
            "INSERT INTO messages (id, queue, status, record) VALUES (?, 'work', 'queued', ?)",
            (mid, old),
        )
    conn.close()
    async with client_for(settings) as (client, _):
        doc = await (await client.get(f"/v1/messages/{mid}")).get_json()
        assert (doc["status"], doc["body"], doc["expires_at"]) == ("queued", {"n": 1}, None)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


async def test_a_schema_2_journal_without_expired_counts_gains_them_and_counts_expiry(
    tmp_settings: Callable[..., Settings],
) -> None:
    # Schema 2 as kept counts first wrote it, before expiry: a counts table without an
    # `expired` column, and no trigger to count one.
    settings = sqlite_settings(tmp_settings)
    path = Path(settings.broker.sqlite_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA_1[:-1]:
            conn.execute(statement)
        conn.execute(
            "CREATE TABLE counts (queue TEXT PRIMARY KEY, published INTEGER NOT NULL DEFAULT 0, "
            "succeeded INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0, "
            "failed INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0)"
        )
        conn.execute("INSERT INTO counts (queue, published, failed) VALUES ('work', 5, 2)")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    async with client_for(settings) as (client, runtime):
        await runtime.broker.pause("work")
        r = await client.post(Q, json={"body": 1, "expires_in_s": 0.2})
        gone = (await r.get_json())["id"]
        msg = await runtime.broker.wait(gone, 20)
        assert msg is not None and msg.status is Status.EXPIRED
        counts = (await (await client.get("/v1/queues/work")).get_json())["counts"]
        assert (counts["published"], counts["failed"], counts["expired"]) == (6, 2, 1)
    with sqlite3.connect(path) as conn:
        kept = conn.execute("SELECT published, expired FROM counts WHERE queue = 'work'")
        assert kept.fetchone() == (6, 1)  # counted in the journal too, by its trigger
    conn.close()


async def test_a_journal_of_a_later_schema_is_refused_by_name(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = sqlite_settings(tmp_settings)
    path = Path(settings.broker.sqlite_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    with pytest.raises(StartupError, match="journal schema 3; this Spool reads schema 2"):
        async with running(settings):
            pass


async def test_expiry_survives_a_restart_and_a_crash_image_expires_at_start(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = sqlite_settings(tmp_settings)
    path = Path(settings.broker.sqlite_path)
    async with client_for(settings) as (client, runtime):
        await runtime.broker.pause("work")
        r = await client.post(Q, json={"body": 1, "expires_in_s": 3600})
        kept = await r.get_json()
        r = await client.post(Q, json={"body": 2, "expires_in_s": 0.2})
        gone = (await r.get_json())["id"]
        msg = await runtime.broker.wait(gone, 20)
        assert msg is not None and msg.status is Status.EXPIRED
        assert rows(path)[gone] == "expired"
    stale = message(Status.QUEUED, expires_at=time.time() - 1)
    crash_image(path, [stale], paused=[])
    async with client_for(settings) as (client, runtime):
        doc = await (await client.get(f"/v1/messages/{kept['id']}")).get_json()
        assert (doc["status"], doc["expires_at"]) == ("queued", kept["expires_at"])
        assert (await (await client.get(f"/v1/messages/{gone}")).get_json())["status"] == "expired"
        msg = await runtime.broker.wait(stale.id, 20)
        assert msg is not None and msg.status is Status.EXPIRED and msg.attempts == 0
