"""Cancels racing consumers on the sqlite backend: a 200 "cancelled" is final, for good.

The journal's commit of a cancel and a consumer's take of the same message used to
interleave: the cancel checked the message was cancellable, awaited its commit, and applied
the cancel to a message a consumer had taken meanwhile, which then ran and ended succeeded.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from service import Settings
from service.model import FINAL, Status

from .conftest import client_for

ROUNDS = 60
BATCH = 40
CANCELLERS = 32


async def test_every_cancelled_message_stays_cancelled_and_the_counts_add_up(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {
            "work": {
                "handler": "tests.handlers:flaky",
                "mode": "thread",
                "concurrency": 4,
                "max_retries": 3,
                "retry_backoff_s": 0.001,
                "retry_backoff_max_s": 0.005,
            }
        },
        broker={"backend": "sqlite"},
    )
    rng = random.Random(7)
    published: list[str] = []
    cancelled: set[str] = set()
    async with client_for(settings) as (client, runtime):
        broker = runtime.broker
        for _round in range(ROUNDS):
            # Some first attempts fail, so retries come back while cancels arrive.
            envelopes: list[dict[str, Any]] = [
                {"body": {"succeed_on": rng.choice((1, 1, 2))}} for _ in range(BATCH)
            ]
            r = await client.post("/v1/queues/work/messages/batch", json={"messages": envelopes})
            assert r.status_code == 202
            ids = [m["id"] for m in (await r.get_json())["messages"]]
            published += ids
            todo = list(ids)

            async def canceller(todo: list[str] = todo) -> None:
                while todo:
                    mid = todo.pop(0)
                    answer = await client.delete(f"/v1/messages/{mid}")
                    if answer.status_code == 200:
                        assert (await answer.get_json())["status"] == "cancelled"
                        cancelled.add(mid)
                    else:
                        assert answer.status_code == 409, await answer.get_data()

            await asyncio.gather(*(canceller() for _ in range(CANCELLERS)))
        for mid in published:
            msg = await broker.wait(mid, 30)
            assert msg is not None and msg.status in FINAL, msg
        statuses = {mid: (await broker.get(mid)).status for mid in published}  # type: ignore[union-attr]
        stats = await broker.stats("work")
    assert cancelled, "no cancel won a race: the test exercised nothing"
    wrong = {mid: statuses[mid].value for mid in cancelled if statuses[mid] is not Status.CANCELLED}
    assert not wrong, f"{len(wrong)} of {len(cancelled)} answered 200 cancelled, then ran: {wrong}"
    counts = stats.counts
    assert counts.published == len(published)
    assert counts.cancelled == len(cancelled)
    assert counts.succeeded + counts.failed + counts.cancelled == counts.published, counts
    assert stats.depth == {"scheduled": 0, "queued": 0, "running": 0, "retrying": 0, "dead": 0}
    # ...and after a restart the journal tells the same story.
    async with client_for(settings) as (_client, runtime):
        for mid in cancelled:
            msg = await runtime.broker.get(mid)
            assert msg is not None and msg.status is Status.CANCELLED
