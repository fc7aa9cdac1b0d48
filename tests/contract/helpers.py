"""Small verbs the contract tests share."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from quart.typing import TestClientProtocol as Client

FINAL = {"succeeded", "failed", "cancelled", "expired"}


async def publish(client: Client, queue: str, body: Any = None, **envelope: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/queues/{queue}/messages", json={"body": body, **envelope})
    assert response.status_code in (200, 202), await response.get_data()
    doc: dict[str, Any] = await response.get_json()
    return doc


async def publish_batch(client: Client, queue: str, envelopes: list[dict[str, Any]]) -> Any:
    return await client.post(f"/v1/queues/{queue}/messages/batch", json={"messages": envelopes})


async def get(client: Client, message_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/messages/{message_id}")
    assert response.status_code == 200, await response.get_data()
    doc: dict[str, Any] = await response.get_json()
    return doc


async def wait_final(client: Client, message_id: str, timeout: float = 15) -> dict[str, Any]:
    """Long-polls (woken by the outcome) until the message is final."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"message {message_id} not final within {timeout}s"
        response = await client.get(f"/v1/messages/{message_id}?wait={min(left, 60):.3f}")
        doc: dict[str, Any] = await response.get_json()
        if doc["status"] in FINAL:
            return doc


async def wait_status(
    client: Client, message_id: str, status: str, timeout: float = 10
) -> dict[str, Any]:
    """Polls for a non-final status (retrying, running...): bounded, 20 ms apart."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = await get(client, message_id)
        if doc["status"] == status:
            return doc
        await asyncio.sleep(0.02)
    raise AssertionError(f"message {message_id} never reached {status}: {doc}")


async def figures(client: Client, queue: str) -> dict[str, Any]:
    response = await client.get(f"/v1/queues/{queue}")
    assert response.status_code == 200
    doc: dict[str, Any] = await response.get_json()
    return doc


async def pause(client: Client, queue: str) -> None:
    assert (await client.post(f"/v1/queues/{queue}/pause")).status_code == 200


async def resume(client: Client, queue: str) -> None:
    assert (await client.post(f"/v1/queues/{queue}/resume")).status_code == 200
