"""Results retention: ttl_s and max_entries bound final messages, never live ones."""

from __future__ import annotations

import asyncio
import time

from quart.typing import TestClientProtocol as Client

from .conftest import Connect
from .helpers import pause, publish, wait_final


async def gone_within(client: Client, message_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await client.get(f"/v1/messages/{message_id}")).status_code == 404:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_results_expire_after_ttl_but_dead_letters_stay(connect: Connect) -> None:
    queues = {
        "ok": {"handler": "tests.handlers:echo"},
        "bad": {"handler": "tests.handlers:fail", "max_retries": 0},
    }
    async with connect(queues, results={"ttl_s": 1}) as (client, _):
        done = await publish(client, "ok", 1)
        dead = await publish(client, "bad", 1)
        await wait_final(client, done["id"])
        await wait_final(client, dead["id"])
        assert await gone_within(client, done["id"], timeout=5)
        assert (await client.get(f"/v1/messages/{dead['id']}")).status_code == 200
        page = await (await client.get("/v1/queues/bad/dead")).get_json()
        assert [m["id"] for m in page["messages"]] == [dead["id"]]


async def test_max_entries_evicts_oldest_final_never_live(connect: Connect) -> None:
    queues = {
        "ok": {"handler": "tests.handlers:echo", "concurrency": 1},
        "held": {"handler": "tests.handlers:echo"},
    }
    async with connect(queues, results={"max_entries": 3}) as (client, _):
        await pause(client, "held")
        live = [(await publish(client, "held", i))["id"] for i in range(5)]
        finals = []
        for i in range(5):
            msg = await publish(client, "ok", i)
            await wait_final(client, msg["id"])
            finals.append(msg["id"])
        codes = [(await client.get(f"/v1/messages/{m}")).status_code for m in finals]
        assert codes == [404, 404, 200, 200, 200]
        for mid in live:
            assert (await client.get(f"/v1/messages/{mid}")).status_code == 200


async def test_idempotency_key_is_free_again_once_its_message_expires(connect: Connect) -> None:
    async with connect({"ok": {"handler": "tests.handlers:echo"}}, results={"ttl_s": 1}) as (
        client,
        _,
    ):
        first = await publish(client, "ok", 1, idempotency_key="k")
        await wait_final(client, first["id"])
        assert await gone_within(client, first["id"], timeout=5)
        again = await client.post(
            "/v1/queues/ok/messages", json={"body": 2, "idempotency_key": "k"}
        )
        assert again.status_code == 202
        assert (await again.get_json())["id"] != first["id"]
