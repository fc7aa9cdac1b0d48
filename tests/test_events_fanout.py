"""`GET /v1/events` with many streams: each event encoded once per tick for all of them, and
coalesced (a message's latest status per tick), in the SSE format SPEC gives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import cast

import msgspec
from quart.testing.connections import TestHTTPConnection as Connection

from service import Runtime, Settings
from service.api.hub import EventHub, NodeView
from service.model import Envelope

from .conftest import client_for, running
from .test_events import Event, parse

QUEUES = {
    "work": {"handler": "tests.handlers:echo", "concurrency": 4},
    "held": {"handler": "tests.handlers:echo"},
}
LIFECYCLE = ["queued", "running", "succeeded"]
EVENT_KEYS = ["id", "queue", "status", "attempts"]  # SPEC's order


def message_lines(chunk: bytes) -> list[tuple[str, str]]:
    """(event name, data line) of every frame, checked to be exactly SPEC's framing."""
    frames = chunk.split(b"\n\n")
    assert frames[-1] == b"", "a chunk ends with a whole frame"
    out = []
    for frame in frames[:-1]:
        event, data = frame.decode().split("\n")
        assert event.startswith("event: ") and data.startswith("data: "), frame
        out.append((event[7:], data[6:]))
    return out


async def publish(rt: Runtime, queue: str, count: int) -> list[str]:
    envelopes = [Envelope(body=msgspec.Raw(str(i).encode())) for i in range(count)]
    return [p.message.id for p in await rt.broker.publish(queue, envelopes)]


async def test_a_tick_encodes_each_event_once_and_coalesces_each_message(
    tmp_settings: Callable[..., Settings],
) -> None:
    async with running(tmp_settings(QUEUES)) as rt:
        await rt.broker.pause("held")
        await rt.broker.pause("work")
        hub = EventHub(
            rt.broker, NodeView(rt.settings, rt, rt.executors), flush_s=3600
        )  # ticks only when the test calls flush()
        await hub.attach()
        try:
            everything = [hub.subscribe(None) for _ in range(30)]
            held_only = [hub.subscribe(["held"]) for _ in range(10)]
            ids = await publish(rt, "held", 40)
            cancelled = ids[::2]
            for mid in cancelled:  # a second transition within the same tick
                await rt.broker.cancel(mid)
            work_ids = await publish(rt, "work", 5)
            hub.flush()

            chunks = [sub.take() for sub in everything]
            assert len({id(chunk) for chunk in chunks}) == 1, "one encoding for all streams"
            filtered = [sub.take() for sub in held_only]
            assert len({id(chunk) for chunk in filtered}) == 1
            for chunk, wanted in ((chunks[0], ids + work_ids), (filtered[0], ids)):
                lines = message_lines(chunk)
                assert {name for name, _ in lines} == {"message"}
                docs = [msgspec.json.decode(data) for _, data in lines]
                assert [list(doc) for doc in docs] == [EVENT_KEYS] * len(docs)
                assert [doc["id"] for doc in docs] == wanted  # one each, in publish order
                for doc in docs:
                    latest = "cancelled" if doc["id"] in cancelled else "queued"
                    queue = "work" if doc["id"] in work_ids else "held"
                    assert doc == {"id": doc["id"], "queue": queue, "status": latest, "attempts": 0}
            hub.flush()  # nothing changed since: nothing is sent
            assert all(sub.take() == b"" for sub in everything + held_only)
        finally:
            await hub.detach()


async def test_many_streams_each_see_every_messages_latest_status_in_order(
    tmp_settings: Callable[..., Settings],
) -> None:
    streams = 20
    async with client_for(tmp_settings(QUEUES)) as (client, rt), AsyncExitStack() as stack:
        connections = []
        for _ in range(streams):
            opened = cast(AbstractAsyncContextManager[Connection], client.request("/v1/events"))
            conn = await stack.enter_async_context(opened)
            await conn.send_complete()
            # Its first bytes: the route has subscribed it to the hub.
            assert (await conn.receive()).startswith(b"retry:")
            connections.append(conn)
        ids = await publish(rt, "work", 200)  # a batch: 200 transitions in one call
        for i in range(20):  # and single publishes through the API
            r = await client.post("/v1/queues/work/messages", json={"body": i})
            ids.append((await r.get_json())["id"])

        for events in await asyncio.gather(*(read_until_done(conn, ids) for conn in connections)):
            check_stream(events, ids)
        for conn in connections:
            await conn.disconnect()


async def read_until_done(conn: Connection, ids: list[str]) -> list[Event]:
    """The stream's events up to the one that shows the last of `ids` succeeded."""
    data = b""
    async with asyncio.timeout(30):
        while True:
            data += await conn.receive()
            events = parse(data[: data.rfind(b"\n\n") + 2])
            done = {m["id"] for n, m in events if n == "message" and m["status"] == "succeeded"}
            if done >= set(ids):
                return events


def check_stream(events: list[Event], ids: list[str]) -> None:
    """Each message's latest status, its statuses in lifecycle order, each at most once."""
    by_id: dict[str, list[str]] = {}
    for name, doc in events:
        assert name in ("queues", "message")
        if name == "message":
            assert list(doc) == EVENT_KEYS and doc["queue"] == "work"
            assert doc["attempts"] == (0 if doc["status"] == "queued" else 1)
            by_id.setdefault(doc["id"], []).append(doc["status"])
    for mid in ids:
        statuses = by_id[mid]
        assert statuses[-1] == "succeeded"  # the latest, always
        # Skipped ones aside, in lifecycle order, each at most once.
        assert statuses == sorted(set(statuses), key=LIFECYCLE.index), statuses
