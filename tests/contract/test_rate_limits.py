"""Rate limits and snoozes (issue 15 item 3), through the HTTP API, on every backend."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from .conftest import Connect
from .helpers import figures, publish, publish_batch, wait_final, wait_status


@pytest.mark.parametrize(
    ("handler", "mode", "how"),
    [
        ("tests.handlers:snooze", "thread", "raise"),
        ("tests.handlers:snooze", "thread", "return"),
        ("tests.handlers:snooze_async", "async", "raise"),
        ("tests.handlers:snooze", "process", "raise"),
    ],
)
async def test_a_snoozed_message_runs_again_without_counting_an_attempt(
    connect: Connect, tmp_path: Path, handler: str, mode: str, how: str
) -> None:
    queues = {"q": {"handler": handler, "mode": mode, "max_retries": 0}}
    async with connect(queues) as (client, _):
        body = {"path": str(tmp_path / "calls"), "snoozes": 3, "how": how}
        msg = await publish(client, "q", body)
        done = await wait_final(client, msg["id"])
        # Three snoozes with max_retries = 0: none of them was a failed attempt.
        assert done["status"] == "succeeded", done
        assert done["result"] == {"calls": 4, "attempt": 1}
        assert done["attempts"] == 1
        assert done["error"] is None
        counts = (await figures(client, "q"))["counts"]
        assert (counts["succeeded"], counts["retried"], counts["failed"]) == (1, 0, 0)
        text = await (await client.get("/metrics")).get_data(as_text=True)
        assert 'spool_messages_snoozed_total{queue="q"} 3.0' in text
        assert 'spool_messages_processed_total{outcome="succeeded",queue="q"} 1.0' in text


async def test_a_snoozed_message_waits_scheduled_for_its_retry_after(
    connect: Connect, tmp_path: Path
) -> None:
    queues = {"q": {"handler": "tests.handlers:snooze"}}
    async with connect(queues) as (client, _):
        body = {"path": str(tmp_path / "calls"), "snoozes": 1, "after_s": 3600}
        msg = await publish(client, "q", body)
        doc = await wait_status(client, msg["id"], "scheduled")
        assert doc["attempts"] == 0
        assert doc["scheduled_for"] is not None
        assert (await figures(client, "q"))["depth"]["scheduled"] == 1


async def test_a_limited_queue_never_starts_more_than_its_rate_allows(connect: Connect) -> None:
    # 20/s with a burst of 2: over any window, starts <= 20 x window + 2. Read from each
    # message's own started_at, so a slow machine can only make it easier, never fail it.
    queues = {
        "q": {
            "handler": "tests.handlers:echo",
            "concurrency": 8,
            "rate_limit": "20/s",
            "rate_limit_burst": 2,
        }
    }
    async with connect(queues) as (client, _):
        response = await publish_batch(client, "q", [{"body": n} for n in range(30)])
        assert response.status_code == 202
        ids = [m["id"] for m in (await response.get_json())["messages"]]
        started = sorted([_seconds((await wait_final(client, mid))["started_at"]) for mid in ids])
        for i in range(len(started)):
            for j in range(i, len(started)):
                # started_at is shown to the millisecond: allow one either side.
                assert j - i + 1 <= 20 * (started[j] - started[i] + 0.002) + 2, (i, j)
        text = await (await client.get("/metrics")).get_data(as_text=True)
        assert 'spool_rate_limited_total{queue="q"}' in text
        assert 'spool_rate_limited_total{queue="q"} 0.0' not in text


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_publish_answers_of_a_limited_queue_carry_its_rate_limit_policy(
    connect: Connect,
) -> None:
    queues = {
        "limited": {"handler": "tests.handlers:echo", "rate_limit": "30/m"},
        "free": {"handler": "tests.handlers:echo"},
    }
    async with connect(queues) as (client, _):
        policy = '"limited";q=30;w=60'
        one = await client.post("/v1/queues/limited/messages", json={"body": 1})
        assert (one.status_code, one.headers.get("RateLimit-Policy")) == (202, policy)
        keyed = {"body": 1, "idempotency_key": "k"}
        for status in (202, 200):  # a repeated key answers 200, with the policy too
            again = await client.post("/v1/queues/limited/messages", json=keyed)
            assert (again.status_code, again.headers.get("RateLimit-Policy")) == (status, policy)
        batch = await publish_batch(client, "limited", [{"body": 1}])
        assert batch.headers.get("RateLimit-Policy") == policy
        free = await client.post("/v1/queues/free/messages", json={"body": 1})
        assert free.status_code == 202
        assert "RateLimit-Policy" not in free.headers
