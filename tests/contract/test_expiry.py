"""Message expiry: a message not started by its `expires_at` is never run; it becomes
`expired` (final, counted, never retried), whether a consumer meets it or the sweep does."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..waits import gate_body, started_ids, until
from .conftest import Connect
from .helpers import figures, get, pause, publish, publish_batch, resume, wait_final

FAST = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05}


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_a_message_not_started_by_its_expiry_expires_and_never_runs(
    connect: Connect,
) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        await pause(client, "q")
        msg = await publish(client, "q", "stale", expires_in_s=0.3)
        assert abs(seconds(msg["expires_at"]) - seconds(msg["created_at"]) - 0.3) < 0.002
        done = await wait_final(client, msg["id"])  # the sweep, while the queue is paused
        assert done["status"] == "expired"
        assert (done["attempts"], done["result"], done["started_at"]) == (0, None, None)
        assert done["finished_at"] >= done["expires_at"]
        fig = await figures(client, "q")
        assert fig["depth"]["queued"] == 0
        assert fig["counts"]["expired"] == 1
        await resume(client, "q")
        later = await publish(client, "q", "fresh")  # behind the expired one
        assert (await wait_final(client, later["id"]))["status"] == "succeeded"
        again = await get(client, msg["id"])
        assert (again["status"], again["attempts"]) == ("expired", 0)
        metrics = await (await client.get("/metrics")).get_data(as_text=True)
        assert 'spool_messages_processed_total{outcome="expired",queue="q"} 1.0' in metrics


async def test_a_message_started_before_its_expiry_runs_to_the_end(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        msg = await publish(client, "q", "in time", expires_in_s=60)
        done = await wait_final(client, msg["id"])
        assert (done["status"], done["result"]) == ("succeeded", "in time")
        assert done["expires_at"] == msg["expires_at"]


async def test_a_retrying_message_past_its_expiry_expires_instead_of_running_again(
    connect: Connect, tmp_path: Path
) -> None:
    queues = {"q": {"handler": "tests.handlers:gate", "max_retries": 5, **FAST}}
    async with connect(queues) as (client, _):
        gate = gate_body(tmp_path, "release", fail=True)
        msg = await publish(client, "q", gate, expires_in_s=0.5)
        started = tmp_path / "release.started"
        await until(lambda: started_ids(started) == [msg["id"]], "the first attempt")
        deadline = seconds(msg["expires_at"])
        await until(lambda: time.time() > deadline + 0.05, "the expiry to pass")
        (tmp_path / "release").touch()  # the attempt fails after the expiry: no retry runs
        done = await wait_final(client, msg["id"])
        assert (done["status"], done["attempts"]) == ("expired", 1)
        assert done["error"]["type"] == "RuntimeError"  # the last failure stays readable
        assert started_ids(started) == [msg["id"]]
        counts = (await figures(client, "q"))["counts"]
        assert (counts["retried"], counts["expired"], counts["failed"]) == (1, 1, 0)


async def test_the_queue_default_expiry_applies_when_the_envelope_sets_none(
    connect: Connect,
) -> None:
    queues = {"q": {"handler": "tests.handlers:echo", "expires_in_s": 0.3}}
    async with connect(queues) as (client, _):
        await pause(client, "q")
        r = await publish_batch(client, "q", [{"body": 1}, {"body": 2, "expires_in_s": 120}])
        assert r.status_code == 202, await r.get_data()
        short, long = (await r.get_json())["messages"]
        assert abs(seconds(short["expires_at"]) - seconds(short["created_at"]) - 0.3) < 0.002
        assert abs(seconds(long["expires_at"]) - seconds(long["created_at"]) - 120) < 0.002
        assert (await wait_final(client, short["id"]))["status"] == "expired"
        assert (await get(client, long["id"]))["status"] == "queued"


async def test_a_message_without_expiry_shows_null(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        await pause(client, "q")
        msg = await publish(client, "q", 1)
        assert msg["expires_at"] is None


async def test_an_expired_message_is_final_for_cancel_and_for_its_key(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        await pause(client, "q")
        msg = await publish(client, "q", 1, expires_in_s=0.2, idempotency_key="k")
        assert (await wait_final(client, msg["id"]))["status"] == "expired"
        r = await client.delete(f"/v1/messages/{msg['id']}")
        assert r.status_code == 409
        assert "expired" in (await r.get_json())["detail"]
        again = await client.post("/v1/queues/q/messages", json={"body": 2, "idempotency_key": "k"})
        assert again.status_code == 200
        assert (await again.get_json())["status"] == "expired"


async def test_expiry_counts_from_publish_and_must_outlast_the_delay(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        cases: list[tuple[dict[str, Any], str]] = [
            ({"expires_in_s": 0}, "expires_in_s"),
            ({"expires_in_s": -1}, "expires_in_s"),
            ({"expires_in_s": 30 * 86400 + 1}, "expires_in_s"),
            ({"expires_in_s": "soon"}, "expires_in_s"),
            ({"delay_s": 5, "expires_in_s": 5}, "expires_in_s"),
            ({"delay_s": 5, "expires_in_s": 2}, "expires_in_s"),
        ]
        for extra, field in cases:
            r = await client.post("/v1/queues/q/messages", json={"body": 1, **extra})
            assert r.status_code == 422, (extra, await r.get_data())
            assert r.headers["content-type"] == "application/problem+json"
            assert (await r.get_json())["field"] == field, extra
        r = await publish_batch(
            client, "q", [{"body": 1}, {"body": 2, "delay_s": 9, "expires_in_s": 3}]
        )
        assert r.status_code == 422
        assert (await r.get_json())["field"] == "messages[1].expires_in_s"
        assert (await figures(client, "q"))["counts"]["published"] == 0
        ok = await publish(client, "q", 1, delay_s=5, expires_in_s=5.5)
        assert ok["status"] == "scheduled"


async def test_a_delay_past_the_queue_default_expiry_is_refused(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:echo", "expires_in_s": 10}}
    async with connect(queues) as (client, _):
        r = await client.post("/v1/queues/q/messages", json={"body": 1, "delay_s": 10})
        assert r.status_code == 422
        doc = await r.get_json()
        assert doc["field"] == "delay_s"
        assert "expires_in_s" in doc["detail"]
        # The envelope's own expiry overrides the queue's, so a long delay may set one.
        ok = await publish(client, "q", 1, delay_s=10, expires_in_s=20)
        assert ok["status"] == "scheduled"
