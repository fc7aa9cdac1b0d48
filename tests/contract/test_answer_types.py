"""Every answer is the type /openapi.json documents for its route and status, on every
backend: decoded as that type and written again, it is the same document (no field missing,
none extra, none of another type). The document is generated from the types the routes
encode (service/api/bodies.py), so this is what keeps the two one."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import msgspec
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from service.openapi import _TYPES, openapi_document

from .conftest import Connect
from .helpers import pause, publish, publish_batch, resume, wait_final

DOC = openapi_document()
# The types the document's answers refer to, by name.
TYPES = {t.__name__: t for t in _TYPES}

QUEUES = {
    "q": {"handler": "tests.handlers:echo"},
    "bad": {"handler": "tests.handlers:fail", "max_retries": 0},
}


async def documented(call: Awaitable[Response], method: str, path: str) -> dict[str, Any]:
    """The answer of `call`, checked against what the document says `method path` answers
    with its status; returns the answer's JSON."""
    response = await call
    answers = DOC["paths"][path][method.lower()]["responses"]
    status = str(response.status_code)
    assert status in answers, f"{method} {path} answered {status}, not documented"
    content = answers[status]["content"]
    kind = response.mimetype
    assert kind in content, f"{method} {path} {status} answered {kind}, documented {set(content)}"
    name = content[kind]["schema"]["$ref"].rsplit("/", 1)[1]
    data = await response.get_data()
    decoded = msgspec.json.decode(data, type=TYPES[name])
    doc: dict[str, Any] = json.loads(data)
    assert json.loads(msgspec.json.encode(decoded)) == doc, f"{method} {path} {status}: {name}"
    return doc


async def test_every_answer_is_the_type_its_route_documents(connect: Connect) -> None:
    async with connect(QUEUES) as (client, _):
        await answers_of_messages(client)
        await answers_of_queues(client)
        await answers_of_the_node(client)
        await answers_of_problems(client)


async def answers_of_messages(client: Client) -> None:
    await pause(client, "q")
    one = "/v1/queues/{queue}/messages"
    first = await documented(
        client.post("/v1/queues/q/messages", json={"body": {"a": 1}, "idempotency_key": "k"}),
        "POST",
        one,
    )
    again = await documented(
        client.post("/v1/queues/q/messages", json={"body": 2, "idempotency_key": "k"}), "POST", one
    )
    assert again["id"] == first["id"]
    mixed: list[dict[str, Any]] = [
        {"body": 1},
        {"body": [2], "delay_s": 30, "priority": 3, "headers": {"h": "v"}},
    ]
    alike: list[dict[str, Any]] = [{"body": i} for i in range(5)]
    for envelopes in (alike, mixed):
        batch = await documented(
            publish_batch(client, "q", envelopes), "POST", "/v1/queues/{queue}/messages/batch"
        )
        # One publish, one time: every message of the answer, and as read back, shares it.
        times = {m["created_at"] for m in batch["messages"]}
        assert len(times) == 1
        for message in batch["messages"]:
            read = await documented(
                client.get(f"/v1/messages/{message['id']}"), "GET", "/v1/messages/{id}"
            )
            assert read["created_at"] in times
    await documented(
        client.get(f"/v1/messages/{first['id']}?wait=0.05"), "GET", "/v1/messages/{id}"
    )
    await documented(client.delete(f"/v1/messages/{first['id']}"), "DELETE", "/v1/messages/{id}")
    await resume(client, "q")


async def answers_of_queues(client: Client) -> None:
    failed = await wait_final(client, (await publish(client, "bad", {"x": 1}))["id"])
    assert failed["status"] == "failed"
    await documented(client.get("/v1/queues"), "GET", "/v1/queues")
    await documented(client.get("/v1/queues/bad"), "GET", "/v1/queues/{queue}")
    await documented(client.post("/v1/queues/bad/pause"), "POST", "/v1/queues/{queue}/pause")
    dead = await documented(
        client.get("/v1/queues/bad/dead?limit=1"), "GET", "/v1/queues/{queue}/dead"
    )
    assert [m["id"] for m in dead["messages"]] == [failed["id"]]
    redriven = await documented(
        client.post("/v1/queues/bad/dead/redrive", json={"ids": [failed["id"], "nope"]}),
        "POST",
        "/v1/queues/{queue}/dead/redrive",
    )
    assert redriven == {"redriven": 1, "skipped": ["nope"]}
    await documented(client.post("/v1/queues/bad/resume"), "POST", "/v1/queues/{queue}/resume")
    history = "/v1/queues/{queue}/history"
    await documented(client.get("/v1/queues/bad/history"), "GET", history)
    await documented(client.get("/v1/queues/nope/history"), "GET", history)


async def answers_of_the_node(client: Client) -> None:
    await documented(client.get("/healthz"), "GET", "/healthz")
    await documented(client.get("/readyz"), "GET", "/readyz")
    await documented(client.get("/v1/node"), "GET", "/v1/node")


async def answers_of_problems(client: Client) -> None:
    invalid = await documented(
        client.post("/v1/queues/q/messages", json={"body": 1, "priority": 10}),
        "POST",
        "/v1/queues/{queue}/messages",
    )
    assert (invalid["status"], invalid["field"]) == (422, "priority")
    unknown = await documented(client.get("/v1/queues/nope"), "GET", "/v1/queues/{queue}")
    assert unknown["status"] == 404 and "field" not in unknown
    done = await wait_final(client, (await publish(client, "q", 1))["id"])
    refused = await documented(
        client.delete(f"/v1/messages/{done['id']}"), "DELETE", "/v1/messages/{id}"
    )
    assert refused["status"] == 409
