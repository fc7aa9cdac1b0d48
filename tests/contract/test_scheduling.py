"""Delays, priorities, pause / resume."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from quart.typing import TestClientProtocol as Client

from ..waits import gate_body, started_ids, until
from .conftest import Connect
from .helpers import figures, pause, publish, publish_batch, resume, wait_final


async def until_queued(client: Client, queue: str, count: int, timeout: float = 10) -> None:
    """Until `count` messages wait in the queue (a delayed one once it has fallen due)."""
    deadline = time.monotonic() + timeout
    while (depth := (await figures(client, queue))["depth"])["queued"] != count:
        assert time.monotonic() < deadline, f"never {count} queued: {depth}"
        await asyncio.sleep(0.02)


async def test_delayed_message_is_scheduled_then_runs(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        msg = await publish(client, "q", "later", delay_s=0.3)
        assert msg["status"] == "scheduled"
        assert msg["scheduled_for"] > msg["created_at"]
        assert (await figures(client, "q"))["depth"]["scheduled"] == 1
        done = await wait_final(client, msg["id"])
        assert done["status"] == "succeeded"
        assert done["started_at"] >= msg["scheduled_for"]


async def test_a_delay_too_short_for_a_hop_still_never_starts_early(connect: Connect) -> None:
    # Shorter than amqp's slack for one more hop down its delay ladder: it goes straight to
    # the work queue there, and must still wait out its delay before it starts.
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        r = await publish_batch(client, "q", [{"body": i, "delay_s": 0.045} for i in range(5)])
        assert r.status_code == 202, await r.get_data()
        for msg in (await r.get_json())["messages"]:
            done = await wait_final(client, msg["id"])
            assert done["status"] == "succeeded"
            assert done["started_at"] >= msg["scheduled_for"], (done, msg)


async def test_delayed_messages_run_in_due_order(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:echo", "concurrency": 1}}
    async with connect(queues) as (client, _):
        # One batch: one created_at, so the due times are exactly the delays apart however
        # long a publish takes (one by one, a slow publish could reorder them).
        delays = [0.7, 0.1, 0.4]
        r = await publish_batch(client, "q", [{"body": d, "delay_s": d} for d in delays])
        assert r.status_code == 202, await r.get_data()
        ids = [m["id"] for m in (await r.get_json())["messages"]]
        done = [await wait_final(client, mid) for mid in ids]
        order = [d["body"] for d in sorted(done, key=lambda d: d["started_at"])]
        assert order == sorted(delays)


async def test_priorities_run_highest_first_fifo_within(connect: Connect) -> None:
    # Each run takes 20 ms, so start times (millisecond resolution) cannot tie.
    queues = {"q": {"handler": "tests.handlers:async_sleep", "mode": "async", "concurrency": 1}}
    async with connect(queues) as (client, _):
        await pause(client, "q")
        plan = [(0, "a"), (5, "b"), (9, "c"), (5, "d"), (0, "e"), (9, "f")]
        ids = [
            (await publish(client, "q", {"seconds": 0.02, "tag": tag}, priority=p))["id"]
            for p, tag in plan
        ]
        await resume(client, "q")
        done = [await wait_final(client, mid) for mid in ids]
        order = [d["body"]["tag"] for d in sorted(done, key=lambda d: d["started_at"])]
        assert order == ["c", "f", "b", "d", "a", "e"]


async def test_due_delayed_message_is_ordered_by_priority(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo", "concurrency": 1}}) as (client, _):
        await pause(client, "q")
        low = await publish(client, "q", "low", priority=1)
        high = await publish(client, "q", "high", priority=8, delay_s=0.05)
        await until_queued(client, "q", 2)  # the delayed one fell due while paused
        await resume(client, "q")
        a, b = await wait_final(client, low["id"]), await wait_final(client, high["id"])
        assert b["started_at"] <= a["started_at"]


async def test_paused_queue_accepts_but_hands_out_nothing(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        await pause(client, "q")
        msg = await publish(client, "q", 1)
        r = await client.get(f"/v1/messages/{msg['id']}?wait=0.3")
        assert (await r.get_json())["status"] == "queued"
        fig = await figures(client, "q")
        assert fig["paused"] is True
        assert fig["depth"]["queued"] == 1
        await resume(client, "q")
        assert (await figures(client, "q"))["paused"] is False
        assert (await wait_final(client, msg["id"]))["status"] == "succeeded"


async def test_pause_lets_in_flight_work_finish(connect: Connect, tmp_path: Path) -> None:
    queues = {"q": {"handler": "tests.handlers:gate_async", "mode": "async", "concurrency": 1}}
    async with connect(queues) as (client, _):
        gate = gate_body(tmp_path, "release")
        running = await publish(client, "q", gate)
        await until(lambda: started_ids(tmp_path / "release.started") == [running["id"]])
        await pause(client, "q")  # while its handler runs, held on the gate
        waiting = await publish(client, "q", gate)
        (tmp_path / "release").touch()
        assert (await wait_final(client, running["id"]))["status"] == "succeeded"
        r = await client.get(f"/v1/messages/{waiting['id']}?wait=0.2")
        assert (await r.get_json())["status"] == "queued"


async def test_pause_and_resume_of_unknown_queue_is_404(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        assert (await client.post("/v1/queues/nope/pause")).status_code == 404
        assert (await client.post("/v1/queues/nope/resume")).status_code == 404
        assert (await client.get("/v1/queues/nope/dead")).status_code == 404
        assert (await client.post("/v1/queues/nope/dead/redrive")).status_code == 404
