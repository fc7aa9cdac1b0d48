"""The HTTP API in process (app.test_app + test_client), on the memory backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from service import Settings

from .conftest import client_for

PROBLEM = "application/problem+json"
Q = "/v1/queues/work/messages"


@pytest.fixture
async def client(tmp_settings: Callable[..., Settings]) -> AsyncIterator[Client]:
    settings = tmp_settings(
        {
            "work": {"handler": "tests.handlers:echo", "concurrency": 2},
            "ctx": {"handler": "tests.handlers:with_context", "options": {"k": "v"}},
            "small": {"handler": "tests.handlers:sleep", "max_size": 2, "concurrency": 1},
            "held": {"handler": "tests.handlers:echo", "max_size": 3},
        },
        server={"max_body_bytes": 2048, "max_batch": 5},
    )
    async with client_for(settings) as (test_client, runtime):
        await runtime.broker.pause("held")
        yield test_client


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data()
    assert response.content_type == PROBLEM
    doc: dict[str, Any] = await response.get_json()
    assert {"type", "title", "status", "detail"} <= set(doc)
    assert doc["status"] == status
    assert "Traceback" not in doc["detail"]
    return doc


async def test_publish_returns_202_with_location_and_the_message(client: Client) -> None:
    r = await client.post(Q, json={"body": {"x": 1}, "headers": {"h": "v"}, "priority": 5})
    assert r.status_code == 202
    msg = await r.get_json()
    assert r.headers["Location"] == f"/v1/messages/{msg['id']}"
    assert msg["queue"] == "work" and msg["body"] == {"x": 1} and msg["priority"] == 5
    assert msg["headers"] == {"h": "v"} and msg["attempts"] == 0
    assert msg["status"] in ("queued", "running", "succeeded")
    assert msg["created_at"].endswith("Z") and msg["scheduled_for"] is None
    assert set(msg) == {
        "id",
        "queue",
        "status",
        "body",
        "headers",
        "priority",
        "attempts",
        "result",
        "error",
        "created_at",
        "scheduled_for",
        "started_at",
        "finished_at",
        "progress",
        "trace",
    }
    assert msg["trace"] is None  # published without a traceparent


async def test_long_poll_returns_the_result_when_final(client: Client) -> None:
    msg = await (await client.post(Q, json={"body": [1, "two", None]})).get_json()
    r = await client.get(f"/v1/messages/{msg['id']}?wait=5")
    done = await r.get_json()
    assert done["status"] == "succeeded"
    assert done["result"] == [1, "two", None]
    assert done["attempts"] == 1 and done["started_at"] and done["finished_at"]


async def test_handler_gets_context_with_options(client: Client) -> None:
    r = await client.post("/v1/queues/ctx/messages", json={"body": 0, "headers": {"a": "b"}})
    msg = await r.get_json()
    done = await (await client.get(f"/v1/messages/{msg['id']}?wait=5")).get_json()
    assert done["result"] == {
        "id": msg["id"],
        "queue": "ctx",
        "attempt": 1,
        "headers": {"a": "b"},
        "options": {"k": "v"},
    }


async def test_long_poll_times_out_with_the_current_state(client: Client) -> None:
    msg = await (await client.post("/v1/queues/held/messages", json={"body": 1})).get_json()
    r = await client.get(f"/v1/messages/{msg['id']}?wait=0.2")
    assert r.status_code == 200
    assert (await r.get_json())["status"] == "queued"


async def test_batch_publishes_in_order(client: Client) -> None:
    r = await client.post(f"{Q}/batch", json={"messages": [{"body": i} for i in range(5)]})
    assert r.status_code == 202
    msgs = (await r.get_json())["messages"]
    assert [m["body"] for m in msgs] == list(range(5))
    assert len({m["id"] for m in msgs}) == 5
    assert sorted(m["id"] for m in msgs) == [m["id"] for m in msgs]  # time-ordered ids


async def test_batch_over_max_batch_is_422(client: Client) -> None:
    r = await client.post(f"{Q}/batch", json={"messages": [{"body": i} for i in range(6)]})
    doc = await problem_of(r, 422)
    assert doc["field"] == "messages"


async def test_full_queue_returns_429_with_retry_after(client: Client) -> None:
    for i in range(3):
        assert (await client.post("/v1/queues/held/messages", json={"body": i})).status_code == 202
    r = await client.post("/v1/queues/held/messages", json={"body": 3})
    await problem_of(r, 429)
    assert int(r.headers["Retry-After"]) >= 1


async def test_batch_is_all_or_nothing_against_max_size(client: Client) -> None:
    assert (await client.post("/v1/queues/held/messages", json={"body": 0})).status_code == 202
    r = await client.post(
        "/v1/queues/held/messages/batch", json={"messages": [{"body": 1}, {"body": 2}, {"body": 3}]}
    )
    await problem_of(r, 429)
    figures = await (await client.get("/v1/queues/held")).get_json()
    assert figures["depth"]["queued"] == 1
    assert figures["counts"]["published"] == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"body": 1, "delay_s": -1}, "delay_s"),
        ({"body": 1, "priority": 10}, "priority"),
        ({"body": 1, "priority": "high"}, "priority"),
        ({"body": 1, "idempotency_key": "k" * 201}, "idempotency_key"),
        ({"body": 1, "headers": {"a": 1}}, "headers"),
        ({"body": 1, "surprise": True}, "surprise"),
        ({"delay_s": 1}, "body"),
        ([1, 2], None),
    ],
)
async def test_invalid_envelope_is_422_naming_the_field(
    client: Client, payload: Any, field: str | None
) -> None:
    doc = await problem_of(await client.post(Q, json=payload), 422)
    if field is not None:
        assert doc["field"] == field


async def test_batch_422_names_the_path(client: Client) -> None:
    r = await client.post(
        f"{Q}/batch", json={"messages": [{"body": 1}] * 3 + [{"body": 1, "delay_s": "x"}]}
    )
    doc = await problem_of(r, 422)
    assert doc["field"] == "messages[3].delay_s"


async def test_bad_json_is_400(client: Client) -> None:
    r = await client.post(Q, data=b'{"body": ', headers={"Content-Type": "application/json"})
    await problem_of(r, 400)


async def test_other_content_type_is_415(client: Client) -> None:
    r = await client.post(Q, data=b'{"body": 1}', headers={"Content-Type": "text/plain"})
    await problem_of(r, 415)


async def test_body_over_max_body_bytes_is_413(client: Client) -> None:
    r = await client.post(Q, json={"body": "x" * 4096})
    await problem_of(r, 413)


async def test_unknown_queue_is_404(client: Client) -> None:
    await problem_of(await client.post("/v1/queues/nope/messages", json={"body": 1}), 404)
    await problem_of(await client.get("/v1/queues/nope"), 404)


async def test_unknown_or_malformed_message_id_is_404(client: Client) -> None:
    await problem_of(await client.get("/v1/messages/01890000-0000-7000-8000-000000000000"), 404)
    await problem_of(await client.get("/v1/messages/%20not-an-id"), 404)


@pytest.mark.parametrize("wait", ["0", "-1", "61", "abc", "nan", "inf"])
async def test_bad_wait_is_400(client: Client, wait: str) -> None:
    msg = await (await client.post(Q, json={"body": 1})).get_json()
    await problem_of(await client.get(f"/v1/messages/{msg['id']}?wait={wait}"), 400)


async def test_unmatched_route_and_method_are_problems(client: Client) -> None:
    await problem_of(await client.get("/v2/nothing"), 404)
    await problem_of(await client.put(Q, json={}), 405)


async def test_queue_figures(client: Client) -> None:
    doc = await (await client.get("/v1/queues")).get_json()
    names = [q["name"] for q in doc["queues"]]
    assert names == ["work", "ctx", "small", "held"]
    held = doc["queues"][3]
    assert held["paused"] is True and held["consumers"] == 4 and held["max_size"] == 3
    assert set(held["depth"]) == {"scheduled", "queued", "running", "retrying", "dead"}
    assert set(held["counts"]) == {"published", "succeeded", "retried", "failed", "cancelled"}


async def test_probes_and_openapi(client: Client) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    doc = await ready.get_json()
    assert ready.status_code == 200 and doc["status"] == "ready"
    assert all(check["ok"] for check in doc["checks"].values())
    spec = await (await client.get("/openapi.json")).get_json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/queues/{queue}/messages" in spec["paths"]
    assert "Envelope" in spec["components"]["schemas"]
