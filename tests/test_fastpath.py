"""The publish fast path (service/api/fastpath.py) answers exactly as the Quart route does.

Every case runs twice over ASGI: against the app create_app builds without the fast path,
and with it (as `python -m service` serves it and client_for tests it). A side-by-side test
then compares the two answers field by field, ids and times aside.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import Runtime, Settings, create_app
from service.api.fastpath import FastPublish

from .conftest import running

PROBLEM = "application/problem+json"
Q = "/v1/queues/work/messages"
TOKENS = ["publish:pub-token", "read:read-token", "admin:admin-token"]
PUB = {"Authorization": "Bearer pub-token"}

Client = httpx.AsyncClient


class Served:
    def __init__(self, client: Client, runtime: Runtime, fast: FastPublish | None) -> None:
        self.client = client
        self.runtime = runtime
        self.fast = fast


@pytest.fixture
def settings(tmp_settings: Callable[..., Settings]) -> Settings:
    return tmp_settings(
        {
            "work": {"handler": "tests.handlers:echo", "concurrency": 1},
            "held": {"handler": "tests.handlers:echo", "max_size": 3},
        },
        server={"max_body_bytes": 2048, "max_batch": 5},
        auth={"tokens": TOKENS},
    )


async def _serve(settings: Settings, fast: bool, *paused: str) -> AsyncIterator[Served]:
    async with running(settings) as runtime:
        app = create_app(settings, runtime, fast_publish=fast)
        async with app.test_app():
            front = app.extensions["spool.fastpath"]
            assert (front is not None) == fast
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://spool") as client:
                for queue in ("held", *paused):
                    await runtime.broker.pause(queue)
                yield Served(client, runtime, front)


@pytest.fixture(params=["quart", "fast"])
async def served(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Served]:
    async for s in _serve(settings, request.param == "fast"):
        yield s


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    doc: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(doc) and doc["status"] == status
    return doc


async def test_publish_answers_202_with_location_and_request_id(served: Served) -> None:
    r = await served.client.post(
        Q, json={"body": {"x": 1}, "priority": 3}, headers={**PUB, "X-Request-ID": "abc-1"}
    )
    assert r.status_code == 202
    msg = r.json()
    assert r.headers["location"] == f"/v1/messages/{msg['id']}"
    assert r.headers["x-request-id"] == "abc-1"
    assert r.headers["content-type"] == "application/json"
    assert msg["body"] == {"x": 1} and msg["priority"] == 3 and msg["queue"] == "work"
    if served.fast is not None:
        assert served.fast.answered == 1  # the fast path answered it, not the fallback


async def test_a_fresh_request_id_when_none_is_sent(served: Served) -> None:
    r = await served.client.post(Q, json={"body": 1}, headers=PUB)
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


async def test_repeated_idempotency_key_answers_200_with_the_first_message(served: Served) -> None:
    first = await served.client.post(Q, json={"body": 1, "idempotency_key": "k"}, headers=PUB)
    again = await served.client.post(Q, json={"body": 2, "idempotency_key": "k"}, headers=PUB)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"] and "location" not in again.headers


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": "Bearer read-token"}, 403),
    ],
)
async def test_auth_refusals_are_the_routes_own(
    served: Served, headers: dict[str, str], status: int
) -> None:
    r = await served.client.post(Q, json={"body": 1}, headers=headers)
    problem_of(r, status)
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


async def test_admin_token_may_publish(served: Served) -> None:
    r = await served.client.post(
        Q, json={"body": 1}, headers={"Authorization": "Bearer admin-token"}
    )
    assert r.status_code == 202


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "field"),
    [
        ("/v1/queues/nope/messages", {"json": {"body": 1}}, 404, None),
        (Q, {"content": b'{"body": 1}', "headers": {"Content-Type": "text/plain"}}, 415, None),
        (Q, {"content": b'{"body": ', "headers": {"Content-Type": "application/json"}}, 400, None),
        (Q, {"json": {"body": 1, "colour": "red"}}, 422, "colour"),
        (Q, {"json": {"body": 1, "priority": 10}}, 422, "priority"),
        (Q, {"json": {"body": "x" * 4000}}, 413, None),
        (Q + "/batch", {"json": {"messages": [{"body": i} for i in range(6)]}}, 422, "messages"),
        (
            Q + "/batch",
            {"json": {"messages": [{"body": 1, "delay_s": -1}]}},
            422,
            "messages[0].delay_s",
        ),
    ],
)
async def test_bad_requests_get_the_routes_problem(
    served: Served, path: str, kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    kwargs = dict(kwargs)  # the parameters are shared by both runs
    headers = {**PUB, **kwargs.pop("headers", {})}
    doc = problem_of(await served.client.post(path, headers=headers, **kwargs), status)
    assert doc.get("field") == field
    if served.fast is not None:
        assert served.fast.answered == 0


async def test_full_queue_is_429_with_retry_after_and_batches_are_all_or_nothing(
    served: Served,
) -> None:
    held = "/v1/queues/held/messages"
    for i in range(3):
        assert (await served.client.post(held, json={"body": i}, headers=PUB)).status_code == 202
    r = await served.client.post(held, json={"body": 9}, headers=PUB)
    problem_of(r, 429)
    assert r.headers["retry-after"] == "1"
    r = await served.client.post(held + "/batch", json={"messages": [{"body": 1}]}, headers=PUB)
    problem_of(r, 429)
    assert served.runtime.broker.cached_stats("held").depth["queued"] == 3


async def test_draining_node_answers_503_with_retry_after(served: Served) -> None:
    served.runtime.draining = True
    try:
        r = await served.client.post(Q, json={"body": 1}, headers=PUB)
    finally:
        served.runtime.draining = False
    problem_of(r, 503)
    assert r.headers["retry-after"] == "5"


async def test_batch_publishes_in_order(served: Served) -> None:
    body = {"messages": [{"body": i} for i in range(5)]}
    r = await served.client.post(Q + "/batch", json=body, headers=PUB)
    assert r.status_code == 202
    assert [m["body"] for m in r.json()["messages"]] == list(range(5))
    assert "location" not in r.headers


async def test_metrics_and_access_log_name_the_route_template(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        await served.client.post(Q, json={"body": 1}, headers={**PUB, "X-Request-ID": "rid-7"})
        await served.client.post(Q + "/batch", json={"messages": [{"body": 1}]}, headers=PUB)
    lines = [r for r in caplog.records if r.name == "service.access"]
    assert [(r.getMessage(), r.route, r.status) for r in lines] == [  # type: ignore[attr-defined]
        (f"POST {Q} 202", "/v1/queues/<queue>/messages", 202),
        (f"POST {Q}/batch 202", "/v1/queues/<queue>/messages/batch", 202),
    ]
    assert lines[0].request_id == "rid-7"  # type: ignore[attr-defined]
    text = served.runtime.metrics.render().decode()
    for route in ("/v1/queues/<queue>/messages", "/v1/queues/<queue>/messages/batch"):
        assert (
            f'spool_http_requests_total{{method="POST",route="{route}",status="202"}} 1.0' in text
        )
        assert (
            f'spool_http_request_duration_seconds_count{{method="POST",route="{route}"}} 1.0'
            in text
        )
    assert 'spool_messages_published_total{queue="work"} 2.0' in text


# --------------------------------------------------------------------------- side by side
JSON_TYPE = {"Content-Type": "application/json"}
CASES: list[tuple[str, dict[str, Any]]] = [
    (Q, {"json": {"body": {"a": [1, 2]}, "headers": {"h": "v"}, "priority": 9}}),
    (Q, {"json": {"body": None, "delay_s": 30}}),
    (Q, {"json": {"body": 1, "idempotency_key": "same"}}),
    (Q, {"json": {"body": 2, "idempotency_key": "same"}}),
    (Q + "/batch", {"json": {"messages": [{"body": 1}, {"body": 2, "priority": 1}]}}),
    (Q, {"json": {"body": 1}, "headers": {"X-Request-ID": "x" * 300}}),
    (Q, {"json": {"body": 1}, "headers": {"Content-Type": "application/json; charset=utf-8"}}),
    (Q, {"json": {"nobody": 1}}),
    (Q + "?x=1", {"json": {"body": 1}}),
    ("/v1/queues/work/messages/", {"json": {"body": 1}}),
    # Refusals the fast path answers itself, through the app's own problem mapping.
    (Q, {"content": b'{"body":1,"idempotency_key":"\xff"}', "headers": JSON_TYPE}),
    (
        Q + "/batch",
        {"content": b'{"messages":[{"body":1,"headers":{"\xc3":"v"}}]}', "headers": JSON_TYPE},
    ),
    (Q, {"json": {"body": 1, "priority": 10}}),
    (Q + "/batch", {"json": {"messages": [{"body": i} for i in range(6)]}}),
    (Q, {"json": {"body": 1}, "headers": {"Authorization": "Bearer nope"}}),
    (Q, {"json": {"body": 1}, "headers": {"Authorization": "Bearer read-token"}}),
    *[("/v1/queues/held/messages", {"json": {"body": i}}) for i in range(4)],  # 202s, then 429
]
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def normalised(r: httpx.Response) -> tuple[int, dict[str, str], str]:
    skip = {"date", "server", "x-request-id"}
    headers = {k: ID.sub("ID", v) for k, v in r.headers.items() if k not in skip}
    return r.status_code, headers, TIME.sub("T", ID.sub("ID", r.text))


async def test_fast_path_and_route_answer_alike(settings: Settings) -> None:
    answers: dict[bool, list[tuple[int, dict[str, str], str]]] = {}
    for fast in (False, True):
        # Each side starts empty: no snapshot of the other side's messages.
        Path(settings.broker.snapshot_path).unlink(missing_ok=True)  # noqa: ASYNC240
        answers[fast] = []
        # Paused, so no message changes status while the two sides are compared.
        async for served in _serve(settings, fast, "work"):
            for path, kwargs in CASES:
                args = dict(kwargs)
                headers = {**PUB, **args.pop("headers", {})}
                answers[fast].append(
                    normalised(await served.client.post(path, headers=headers, **args))
                )
    for case, via_quart, via_fast in zip(CASES, answers[False], answers[True], strict=True):
        assert via_quart == via_fast, case


async def test_prefer_wait_answers_200_with_the_final_message_on_both_paths(
    served: Served,
) -> None:
    r = await served.client.post(Q, json={"body": {"x": 1}}, headers={**PUB, "Prefer": "wait=20"})
    assert r.status_code == 200, r.text
    assert r.headers["preference-applied"] == "wait=20"
    assert (r.json()["status"], r.json()["result"]) == ("succeeded", {"x": 1})
    if served.fast is not None:
        assert served.fast.answered == 1  # the fast path waited, not the fallback


@pytest.mark.parametrize("prefer", ["wait=0", "wait=30.5", "wait=soon", "respond-async, wait="])
async def test_a_bad_prefer_wait_is_the_same_400_on_both_paths(served: Served, prefer: str) -> None:
    r = await served.client.post(Q, json={"body": 1}, headers={**PUB, "Prefer": prefer})
    assert "Prefer" in problem_of(r, 400)["detail"]
    if served.fast is not None:
        assert served.fast.refused == 1


async def test_a_batch_ignores_prefer_wait(served: Served) -> None:
    r = await served.client.post(
        f"{Q}/batch", json={"messages": [{"body": 1}]}, headers={**PUB, "Prefer": "wait=x"}
    )
    assert r.status_code == 202 and "preference-applied" not in r.headers


async def test_a_traced_publish_and_wait_keeps_both_on_both_paths(served: Served) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    heads = {**PUB, "Prefer": "wait=20", "traceparent": traceparent, "tracestate": "rojo=1"}
    r = await served.client.post(Q, json={"body": 1}, headers=heads)
    assert r.status_code == 200, r.text
    assert r.headers["preference-applied"] == "wait=20"
    assert r.json()["status"] == "succeeded"
    assert r.json()["trace"] == {"traceparent": traceparent, "tracestate": "rojo=1"}
    if served.fast is not None:
        assert served.fast.answered == 1  # the fast path read both heads, not the fallback
