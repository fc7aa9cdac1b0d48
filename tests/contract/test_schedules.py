"""Schedules on every backend, through the HTTP API: a per-second schedule publishes its
ticks, and every schedule answer is the type /openapi.json documents."""

from __future__ import annotations

import asyncio
import time

from .conftest import Connect
from .test_answer_types import documented

QUEUES = {"ticks": {"handler": "tests.handlers:echo"}}
SCHEDULES = {"contract-tick": {"cron": "* * * * * *", "queue": "ticks", "body": {"n": 1}}}


async def test_schedules_tick_pause_and_answer_as_documented(connect: Connect) -> None:
    async with connect(QUEUES, schedules=SCHEDULES) as (client, _):
        deadline = time.monotonic() + 30
        while True:
            listed = await documented(client.get("/v1/schedules"), "GET", "/v1/schedules")
            [found] = listed["schedules"]
            if found["last_run"] is not None:
                break
            assert time.monotonic() < deadline, "no tick within 30 s"
            await asyncio.sleep(0.05)
        key = f"schedule:contract-tick:{found['last_run']}"
        again = await client.post(
            "/v1/queues/ticks/messages", json={"body": 0, "idempotency_key": key}
        )
        assert again.status_code == 200  # the tick's message holds the key
        one = "/v1/schedules/{name}"
        await documented(client.get("/v1/schedules/contract-tick"), "GET", one)
        paused = await documented(
            client.post("/v1/schedules/contract-tick/pause"), "POST", one + "/pause"
        )
        assert paused["paused"] is True and paused["next_run"] is None
        resumed = await documented(
            client.post("/v1/schedules/contract-tick/resume"), "POST", one + "/resume"
        )
        assert resumed["paused"] is False and resumed["next_run"] is not None
        missing = await client.get("/v1/schedules/nope")
        assert missing.status_code == 404
        assert (await missing.get_json())["type"].endswith("unknown-schedule")
