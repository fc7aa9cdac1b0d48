"""A message's trace context survives what its message survives: a restart from the memory
backend's snapshot or the sqlite journal, and a journal written before traces existed opens
as it is."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from service import Settings
from service.broker.records import decode_message, encode_message
from service.broker.sqlite_store import SCHEMA_VERSION
from service.model import Message, Status, new_id

from .conftest import client_for
from .contract.helpers import wait_final

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "rojo=00f067aa0ba902b7"
HEADERS = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_messages_trace_survives_a_restart(
    tmp_settings: Callable[..., Settings], backend: str
) -> None:
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:trace_of"}}, broker={"backend": backend}
    )
    async with client_for(settings) as (client, runtime):
        await runtime.broker.pause("q")
        response = await client.post("/v1/queues/q/messages", json={"body": 1}, headers=HEADERS)
        mid = (await response.get_json())["id"]
    async with client_for(settings) as (client, runtime):
        await client.post("/v1/queues/q/resume")
        done = await wait_final(client, mid)
        assert done["trace"] == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
        assert done["result"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert done["result"]["tracestate"] == TRACESTATE


def test_a_record_keeps_the_trace_and_leaves_it_out_when_there_is_none() -> None:
    base = Message(new_id(), "q", Status.QUEUED, b"1", {}, 0, 1.5)
    assert b"trace" not in encode_message(base)  # records of untraced messages are unchanged
    traced = msgspec.structs.replace(base, traceparent=TRACEPARENT, tracestate=TRACESTATE)
    back = decode_message(encode_message(traced))
    assert (back.traceparent, back.tracestate) == (TRACEPARENT, TRACESTATE)


# A journal row exactly as Spool wrote it before traces existed (schema 1, no trace fields).
OLD_SCHEMA = (
    "CREATE TABLE messages (id TEXT PRIMARY KEY, queue TEXT NOT NULL, status TEXT NOT NULL, "
    "record BLOB NOT NULL)",
    "CREATE TABLE paused (queue TEXT PRIMARY KEY)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)",
    "PRAGMA user_version = 1",
)


async def test_a_journal_from_before_traces_opens_and_runs_its_messages(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:trace_of"}}, broker={"backend": "sqlite"}
    )
    path = Path(settings.broker.sqlite_path)
    mid = new_id()
    old_record = (
        f'{{"id":"{mid}","queue":"q","status":"queued","body":{{"n":1}},"priority":0,'
        f'"created_at":{time.time() - 5}}}'
    )
    with sqlite3.connect(path) as conn:
        for statement in OLD_SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO messages (id, queue, status, record) VALUES (?, 'q', 'queued', ?)",
            (mid, old_record.encode()),
        )
    conn.close()
    async with client_for(settings) as (client, _):
        done = await wait_final(client, mid)
        assert done["status"] == "succeeded" and done["trace"] is None
        assert done["result"] is None  # ctx.trace is None: the message carried no trace
        response = await client.post("/v1/queues/q/messages", json={"body": 2}, headers=HEADERS)
        traced = await wait_final(client, (await response.get_json())["id"])
        assert traced["result"]["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    with sqlite3.connect(path) as conn:
        # Traces need no schema of their own: the journal is at the current schema (the
        # persisted counts' upgrade from 1), not one past it.
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
