"""GET /v1/queues/{queue}/history: each queue's counts once a second, at most five minutes of
them (issue 16, item 2), in process with a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from service.api.history import HISTORY_SAMPLES, RateHistory
from service.app import create_app
from service.config import Settings

from .conftest import running

QUEUES = {"work": {"handler": "tests.handlers:echo"}, "idle": {"handler": "tests.handlers:echo"}}
DEADLINE_S = 10.0


async def test_history_keeps_the_last_five_minutes_of_samples_oldest_first(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(QUEUES)
    async with running(settings) as runtime:
        app = create_app(settings, runtime)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            published = await client.post("/v1/queues/work/messages", json={"body": 1})
            assert published.status_code == 202
            history: RateHistory = app.extensions["spool.events"].history
            history.stop()  # only this test's samples from here on, at times it chooses
            start = 1_800_000_000.0
            for second in range(HISTORY_SAMPLES + 50):  # more than the ring holds
                history.sample(now=start + 10_000 + second)
            answer = await client.get("/v1/queues/work/history")
            assert answer.status_code == 200
            doc: dict[str, Any] = await answer.get_json()
            samples = doc["samples"]
            assert len(samples) == HISTORY_SAMPLES == doc["max_samples"]
            times = [s["t"] for s in samples]
            assert times == sorted(times) and times[-1] == "2027-01-15T10:52:29.000Z"
            assert samples[-1]["published"] == 1
            idle = await (await client.get("/v1/queues/idle/history")).get_json()
            assert len(idle["samples"]) == HISTORY_SAMPLES
            assert {s["published"] for s in idle["samples"]} == {0}


async def test_history_samples_by_itself_once_the_app_serves(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(QUEUES)
    async with running(settings) as runtime:
        app = create_app(settings, runtime)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DEADLINE_S
            while True:  # the first sample is taken at start, the next a second later
                doc = await (await client.get("/v1/queues/work/history")).get_json()
                if len(doc["samples"]) >= 2:
                    break
                assert loop.time() < deadline, doc
                await asyncio.sleep(0.05)
            assert doc["queue"] == "work" and doc["interval_s"] == 1
