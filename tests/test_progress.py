"""Progress on one node: the throttle that keeps a chatty handler off the loop, the events
stream's `event: progress`, and the context's own checks."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from quart.testing.connections import TestHTTPConnection as Connection

from service import Settings
from service.model import HandlerContext, Message, Progress
from service.progress import MAX_PER_SECOND

from .conftest import client_for
from .test_events import Event, collect

# Enough reports that a handler without a throttle would hand the loop tens of thousands.
CALLS = 50_000


@pytest.mark.parametrize("mode", ["thread", "process"])
async def test_a_chatty_handler_reaches_the_loop_at_most_ten_times_a_second(
    tmp_settings: Callable[..., Settings], mode: str
) -> None:
    queue = {"handler": "tests.handlers:chatty_progress", "mode": mode}
    async with client_for(tmp_settings({"q": queue})) as (client, runtime):
        landed: list[float] = []

        def count(msg: Message) -> None:
            assert msg.progress is not None
            landed.append(msg.progress.fraction)

        stop = runtime.broker.listen_progress(count)
        r = await client.post("/v1/queues/q/messages", json={"body": {"calls": CALLS}})
        mid = (await r.get_json())["id"]
        healthz = []
        while True:
            # The loop keeps answering while the handler reports as fast as it can.
            healthz.append((await client.get("/healthz")).status_code)
            doc = await (await client.get(f"/v1/messages/{mid}?wait=0.05")).get_json()
            if doc["status"] == "succeeded":
                break
        stop()
        assert set(healthz) == {200}
        elapsed = doc["result"]["elapsed_s"]
        # First report at once, then one per interval, plus the attempt's last at its end.
        assert 1 <= len(landed) <= MAX_PER_SECOND * elapsed + 3
        assert len(landed) < CALLS / 100
        # Latest wins: the last report is the one the message keeps.
        assert landed[-1] == 1.0
        assert (doc["progress"]["fraction"], doc["progress"]["detail"]) == (1.0, {"i": CALLS})


async def test_the_events_stream_carries_progress(
    tmp_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    queue = {"handler": "tests.handlers:progress_gate", "mode": "thread"}
    async with (
        client_for(tmp_settings({"q": queue})) as (client, _),
        client.request("/v1/events") as opened,
    ):
        conn = cast(Connection, opened)
        await conn.send_complete()
        r = await client.post("/v1/queues/q/messages", json={"body": {"release": str(release)}})
        mid = (await r.get_json())["id"]

        def reported(events: list[Event]) -> bool:
            return any(n == "progress" and d["id"] == mid for n, d in events)

        events = await collect(conn, reported)
        doc = next(d for n, d in events if n == "progress" and d["id"] == mid)
        assert doc["queue"] == "q"
        assert (doc["progress"]["fraction"], doc["progress"]["detail"]) == (0.5, {"step": "half"})
        release.touch()
        await conn.disconnect()


def test_a_context_checks_a_report_even_without_a_server() -> None:
    ctx = HandlerContext(id="m", queue="q", attempt=1, headers={}, options={})
    ctx.progress(0, None)
    ctx.progress(1, {"ok": True})
    for fraction in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="progress fraction"):
            ctx.progress(fraction)
    with pytest.raises(TypeError, match="progress fraction"):
        ctx.progress("0.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress detail"):
        ctx.progress(0.5, {"x": object()})
    with pytest.raises(ValueError, match="4096"):
        ctx.progress(0.5, "x" * 4096)


def test_a_context_pickles_without_its_sink() -> None:
    sink: Any = object()
    ctx = HandlerContext(id="m", queue="q", attempt=2, headers={"h": "v"}, options={}, sink=sink)
    back = pickle.loads(pickle.dumps(ctx))
    assert (back.id, back.attempt, dict(back.headers), back.sink) == ("m", 2, {"h": "v"}, None)


async def test_a_report_after_the_attempt_ended_changes_nothing(
    tmp_settings: Callable[..., Settings],
) -> None:
    async with client_for(tmp_settings({"q": {"handler": "tests.handlers:echo"}})) as (c, rt):
        r = await c.post("/v1/queues/q/messages", json={"body": 1}, headers={"Prefer": "wait=20"})
        doc = await r.get_json()
        assert doc["status"] == "succeeded"
        late = Progress(0.3, None, 0.0)
        assert rt.broker.report_progress(doc["id"], 1, late) is False
        assert (await (await c.get(f"/v1/messages/{doc['id']}")).get_json())["progress"] is None
