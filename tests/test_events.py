"""GET /v1/events (Server-Sent Events), GET /v1/node and the dashboard page, in process."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from quart.testing.connections import TestHTTPConnection as Connection
from quart.typing import TestClientProtocol as Client
from quart.typing import TestHTTPConnectionProtocol as Stream

from service import Runtime, Settings, create_app
from service.api.bodies import NodeFigures
from service.api.hub import CLIENT_BUFFER_BYTES, EventHub, NodeView
from service.model import Envelope

from .conftest import Server, client_for, running, toml_config

Event = tuple[str, Any]
QUEUES = {
    "work": {"handler": "tests.handlers:echo", "concurrency": 2},
    "bad": {"handler": "tests.handlers:fail", "max_retries": 0},
    "held": {"handler": "tests.handlers:echo"},
}


@pytest.fixture
async def live(tmp_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Client, Runtime]]:
    async with client_for(tmp_settings(QUEUES)) as pair:
        yield pair


def parse(data: bytes) -> list[Event]:
    events = []
    for block in data.decode().split("\n\n"):
        name, payload = "message", []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                payload.append(line[6:])
        if payload:
            events.append((name, json.loads("\n".join(payload))))
    return events


async def collect(
    conn: Stream, until: Callable[[list[Event]], bool], timeout: float = 10
) -> list[Event]:
    """Reads the stream until `until(events)` holds; fails after `timeout` seconds."""
    data = b""
    async with asyncio.timeout(timeout):
        while True:
            data += await conn.receive()
            events = parse(data[: data.rfind(b"\n\n") + 2])
            if until(events):
                return events


def messages(events: list[Event]) -> list[dict[str, Any]]:
    return [doc for name, doc in events if name == "message"]


async def test_stream_sends_queue_figures_and_each_messages_latest_status(
    live: tuple[Client, Runtime],
) -> None:
    client, _ = live
    async with client.request("/v1/events") as opened:
        conn = cast(Connection, opened)
        await conn.send_complete()
        first = await collect(conn, lambda ev: any(n == "queues" for n, _ in ev))
        assert conn.status_code == 200
        assert conn.headers is not None
        assert conn.headers["Content-Type"].startswith("text/event-stream")
        queues_doc = next(doc for name, doc in first if name == "queues")
        assert [q["name"] for q in queues_doc["queues"]] == ["work", "bad", "held"]
        work = queues_doc["queues"][0]
        assert set(work["depth"]) == {"scheduled", "queued", "running", "retrying", "dead"}
        assert work["latency"] == {
            "wait_s": {"p50": None, "p95": None},
            "processing_s": {"p50": None, "p95": None},
        }
        assert {"loop_lag_ms", "executors", "backend"} <= set(queues_doc["node"])

        msg = await (await client.post("/v1/queues/work/messages", json={"body": 1})).get_json()

        def finished(ev: list[Event]) -> bool:
            return any(m["id"] == msg["id"] and m["status"] == "succeeded" for m in messages(ev))

        events = await collect(conn, finished)
        mine = [m for m in messages(events) if m["id"] == msg["id"]]
        # Coalesced per tick: intermediate statuses may be skipped, in order, never the last.
        statuses = [m["status"] for m in mine]
        assert statuses in (
            ["queued", "running", "succeeded"],
            ["queued", "succeeded"],
            ["running", "succeeded"],
            ["succeeded"],
        )
        assert mine[-1] == {"id": msg["id"], "queue": "work", "status": "succeeded", "attempts": 1}

        def measured(ev: list[Event]) -> bool:
            docs = [doc for name, doc in ev if name == "queues"]
            return (
                bool(docs) and docs[-1]["queues"][0]["latency"]["processing_s"]["p50"] is not None
            )

        later = await collect(conn, measured)
        latency = [doc for name, doc in later if name == "queues"][-1]["queues"][0]["latency"]
        assert latency["wait_s"]["p50"] is not None
        assert 0 <= latency["processing_s"]["p50"] <= latency["processing_s"]["p95"] < 5
        await conn.disconnect()


async def test_queue_filter_limits_figures_and_messages(live: tuple[Client, Runtime]) -> None:
    client, _ = live
    async with client.request("/v1/events?queue=bad") as conn:
        await conn.send_complete()
        await client.post("/v1/queues/work/messages", json={"body": 1})
        bad = await (await client.post("/v1/queues/bad/messages", json={"body": 2})).get_json()

        def failed(ev: list[Event]) -> bool:
            return any(m["id"] == bad["id"] and m["status"] == "failed" for m in messages(ev))

        events = await collect(conn, failed)
        assert {m["queue"] for m in messages(events)} == {"bad"}
        for name, doc in events:
            if name == "queues":
                assert [q["name"] for q in doc["queues"]] == ["bad"]
        await conn.disconnect()


async def test_unknown_queue_filter_is_404(live: tuple[Client, Runtime]) -> None:
    client, _ = live
    r = await client.get("/v1/events?queue=nope")
    assert r.status_code == 404
    assert r.content_type == "application/problem+json"


async def test_stream_ends_when_a_graceful_stop_begins(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(QUEUES)
    async with running(settings) as rt:
        app = create_app(settings, rt)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            async with client.request("/v1/events") as conn:
                await conn.send_complete()
                await collect(conn, lambda ev: bool(ev))
                rt.request_stop()
                # the stream closes by itself: leaving this block awaits the response's end
                async with asyncio.timeout(5):
                    await cast(Connection, conn)._task
            r = await client.get("/v1/events")
            assert r.status_code == 503


async def test_a_client_that_falls_behind_is_dropped(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings({"held": {"handler": "tests.handlers:echo", "max_size": 50000}})
    async with running(settings) as rt:
        await rt.broker.pause("held")
        hub = EventHub(
            rt.broker, NodeView(rt.settings, rt, rt.executors), flush_s=3600
        )  # ticks only when the test calls flush()
        await hub.attach()
        try:
            slow = hub.subscribe(None)  # never takes what it is given
            other = hub.subscribe(["elsewhere"])
            untaken_at_ticks: list[int] = []
            while not slow.dropped:
                assert len(untaken_at_ticks) < 40, "never dropped"
                await publish_many(rt, 1000, 1000 * len(untaken_at_ticks))
                untaken_at_ticks.append(slow.untaken)
                hub.flush()
            # Dropped at the first tick that found it past the bound; what it held goes too.
            assert untaken_at_ticks[-1] > CLIENT_BUFFER_BYTES >= untaken_at_ticks[-2]
            assert slow.take() == b""
            assert hub.subscribers == 1 and not other.dropped and other.take() == b""
            assert hub.dropped_total == 1
        finally:
            await hub.detach()


async def publish_many(rt: Runtime, count: int, start: int) -> None:
    envelopes = [Envelope(body=msgspec.Raw(str(start + i).encode())) for i in range(count)]
    await rt.broker.publish("held", envelopes)


async def test_events_and_node_need_the_read_scope(tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings(QUEUES, auth={"tokens": ["read:r", "publish:p", "admin:a"]})
    async with client_for(settings) as (client, _):
        assert (await client.get("/v1/events")).status_code == 401
        assert (
            await client.get("/v1/events", headers={"Authorization": "Bearer p"})
        ).status_code == 403
        r = await client.get("/v1/node", headers={"Authorization": "Bearer r"})
        assert r.status_code == 200
        doc = await r.get_json()
        assert doc["auth"] is True and doc["scopes"] == ["read"]
        r = await client.get("/v1/node", headers={"Authorization": "Bearer p"})
        assert (await r.get_json())["scopes"] == ["publish"]
        assert (await client.get("/v1/node")).status_code == 401
        assert (await client.get("/")).status_code == 200  # the page itself is open


async def test_node_reports_loop_lag_and_executors(live: tuple[Client, Runtime]) -> None:
    client, _ = live
    doc = await (await client.get("/v1/node")).get_json()
    assert doc["auth"] is False and doc["scopes"] == ["admin", "publish", "read"]
    assert doc["loop_lag_ms"] >= 0 and doc["draining"] is False
    assert doc["executors"]["thread"]["size"] == 8
    assert doc["executors"]["thread"]["busy"] == 0


async def test_dashboard_is_one_offline_page(live: tuple[Client, Runtime]) -> None:
    client, _ = live
    r = await client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = await r.get_data(as_text=True)
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page  # no CDN
    for asset in ("/static/dashboard.js", "/static/panels.js", "/static/dashboard.css"):
        assert asset in page
        served = await client.get(asset)
        assert served.status_code == 200
        text = await served.get_data(as_text=True)
        assert "https://" not in text.replace("http://www.w3.org/", "")


async def test_openapi_documents_the_live_routes(live: tuple[Client, Runtime]) -> None:
    client, _ = live
    spec = await (await client.get("/openapi.json")).get_json()
    assert {"/v1/events", "/v1/node", "/"} <= set(spec["paths"])
    assert "text/event-stream" in spec["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    node = await (await client.get("/v1/node")).get_data()
    msgspec.json.decode(node, type=NodeFigures)  # the answer fits the documented schema


def test_open_streams_end_at_a_graceful_stop_over_hypercorn(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(
        toml_config(tmp_path, '[queues.work]\nhandler = "tests.handlers:echo"\n')
    )
    server.start()
    started = time.monotonic()
    with httpx.stream("GET", f"{server.url}/v1/events", timeout=10) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: queues"
        server.signal()
        for _ in lines:  # ends when the server closes the stream, not at the timeout
            pass
    assert time.monotonic() - started < 8
    assert server.wait_exit(15) == 0
    assert "Traceback" not in server.log()


def test_a_client_that_stops_reading_is_dropped_over_a_real_socket(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queue = '[queues.held]\nhandler = "tests.handlers:echo"\nmax_size = 200000\n'
    server = server_factory(toml_config(tmp_path, queue))
    server.start()
    httpx.post(f"{server.url}/v1/queues/held/pause").raise_for_status()
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /v1/events HTTP/1.1\r\nHost: spool\r\n\r\n")  # and never reads
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/v1/node").json()["streams"] != 1:
            assert time.monotonic() < deadline, "the stream never opened"
            time.sleep(0.05)
        batch = {"messages": [{"body": "x" * 200} for _ in range(1000)]}
        for _ in range(150):  # socket buffers take a few MB before the stream's own buffer fills
            httpx.post(f"{server.url}/v1/queues/held/messages/batch", json=batch, timeout=30)
            if httpx.get(f"{server.url}/v1/node").json()["streams"] == 0:
                break
        assert httpx.get(f"{server.url}/v1/node").json()["streams"] == 0, "never dropped"
    with httpx.stream("GET", f"{server.url}/v1/events", timeout=10) as response:
        assert response.status_code == 200  # others are served as before
