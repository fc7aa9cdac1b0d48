"""Idempotency keys, cancel, and all-or-nothing batches."""

from __future__ import annotations

from .conftest import Connect
from .helpers import figures, get, pause, publish, publish_batch, wait_final, wait_status

HELD = {"handler": "tests.handlers:echo", "max_size": 4}


async def test_repeated_key_returns_200_with_the_first_message(connect: Connect) -> None:
    async with connect({"q": HELD, "other": HELD}) as (client, _):
        await pause(client, "q")
        first = await client.post("/v1/queues/q/messages", json={"body": 1, "idempotency_key": "k"})
        assert first.status_code == 202
        again = await client.post("/v1/queues/q/messages", json={"body": 2, "idempotency_key": "k"})
        assert again.status_code == 200
        assert (await again.get_json())["id"] == (await first.get_json())["id"]
        assert (await again.get_json())["body"] == 1  # the body of a repeat is not compared
        fig = await figures(client, "q")
        assert (fig["depth"]["queued"], fig["counts"]["published"]) == (1, 1)
        other = await publish(client, "other", 3, idempotency_key="k")  # keys are per queue
        assert other["id"] != (await first.get_json())["id"]


async def test_keys_work_inside_a_batch(connect: Connect) -> None:
    async with connect({"q": HELD}) as (client, _):
        await pause(client, "q")
        earlier = await publish(client, "q", 0, idempotency_key="a")
        r = await publish_batch(
            client,
            "q",
            [
                {"body": 1, "idempotency_key": "a"},
                {"body": 2, "idempotency_key": "b"},
                {"body": 3, "idempotency_key": "b"},
                {"body": 4},
            ],
        )
        assert r.status_code == 202
        msgs = (await r.get_json())["messages"]
        assert msgs[0]["id"] == earlier["id"]
        assert msgs[1]["id"] == msgs[2]["id"]
        assert (await figures(client, "q"))["depth"]["queued"] == 3


async def test_batch_that_does_not_fit_takes_nothing(connect: Connect) -> None:
    async with connect({"q": HELD}) as (client, _):
        await pause(client, "q")
        await publish(client, "q", 0)
        await publish(client, "q", 0, idempotency_key="old")
        r = await publish_batch(
            client,
            "q",
            [
                {"body": 1, "idempotency_key": "old"},  # a repeat takes no room
                {"body": 2, "idempotency_key": "new"},
                {"body": 3},
                {"body": 4},
            ],
        )
        assert r.status_code == 429
        assert (await figures(client, "q"))["depth"]["queued"] == 2
        # "new" was not registered by the refused batch
        fresh = await client.post(
            "/v1/queues/q/messages", json={"body": 5, "idempotency_key": "new"}
        )
        assert fresh.status_code == 202


async def test_cancel_queued_drops_depth_at_once_and_never_runs(connect: Connect) -> None:
    async with connect({"q": HELD}) as (client, _):
        await pause(client, "q")
        msg = await publish(client, "q", 1)
        r = await client.delete(f"/v1/messages/{msg['id']}")
        assert r.status_code == 200
        assert (await r.get_json())["status"] == "cancelled"
        fig = await figures(client, "q")
        assert (fig["depth"]["queued"], fig["counts"]["cancelled"]) == (0, 1)
        assert (await client.post("/v1/queues/q/resume")).status_code == 200
        survivor = await publish(client, "q", 2)
        assert (await wait_final(client, survivor["id"]))["status"] == "succeeded"
        assert (await get(client, msg["id"]))["status"] == "cancelled"
        assert (await client.delete(f"/v1/messages/{msg['id']}")).status_code == 409


async def test_cancel_scheduled_and_retrying(connect: Connect) -> None:
    queues = {
        "q": HELD,
        "f": {
            "handler": "tests.handlers:fail",
            "retry_backoff_s": 3600,
            "retry_backoff_max_s": 3600,
        },
    }
    async with connect(queues) as (client, _):
        later = await publish(client, "q", 1, delay_s=60)
        assert (await client.delete(f"/v1/messages/{later['id']}")).status_code == 200
        assert (await figures(client, "q"))["depth"]["scheduled"] == 0
        failing = await publish(client, "f", 1)
        await wait_status(client, failing["id"], "retrying")
        r = await client.delete(f"/v1/messages/{failing['id']}")
        assert (await r.get_json())["status"] == "cancelled"
        assert (await figures(client, "f"))["depth"]["retrying"] == 0


async def test_cancel_running_or_final_is_409_unknown_is_404(connect: Connect) -> None:
    queues = {"slow": {"handler": "tests.handlers:async_sleep", "mode": "async"}, "q": HELD}
    async with connect(queues) as (client, _):
        msg = await publish(client, "slow", {"seconds": 0.5})
        await wait_status(client, msg["id"], "running")
        r = await client.delete(f"/v1/messages/{msg['id']}")
        assert r.status_code == 409
        assert r.content_type == "application/problem+json"
        await wait_final(client, msg["id"])
        assert (await client.delete(f"/v1/messages/{msg['id']}")).status_code == 409
        assert (
            await client.delete("/v1/messages/0190aaaa-0000-7000-8000-000000000000")
        ).status_code == 404
