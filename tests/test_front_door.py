"""The ASGI stack create_app installs (service/api/front.py), through the tests' own
client_for: the fast path answers its refusals once and its unexpected errors as a 500
problem+json, and anything that escapes Quart gets the same treatment."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from quart import Response
from quart.typing import TestClientProtocol as Client

from service import Settings
from service.api.fastpath import FastPublish
from service.broker.base import Published
from service.broker.local import LocalBroker
from service.broker.storage import SnapshotStorage
from service.model import Envelope
from service.tracing import Incoming

from .conftest import client_for

PROBLEM = "application/problem+json"
ONE = "/v1/queues/{}/messages"
PUB = {"Authorization": "Bearer pub-token"}


class RecordingBroker(LocalBroker):
    """The real memory broker, counting the publishes it is asked for; `failure`, when set,
    is raised by the next publish (a fault no real input can provoke)."""

    def __init__(self, settings: Settings) -> None:
        snapshot = SnapshotStorage(Path(settings.broker.snapshot_path))
        super().__init__(settings.queues, settings.results, storage=snapshot)
        self.publishes = 0
        self.failure: Exception | None = None

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], trace: Incoming | None = None
    ) -> list[Published]:
        self.publishes += 1
        if self.failure is not None:
            raise self.failure
        return await super().publish(queue, envelopes, trace)


@pytest.fixture
def settings(tmp_settings: Callable[..., Settings]) -> Settings:
    return tmp_settings(
        {
            "work": {"handler": "tests.handlers:echo"},
            "held": {"handler": "tests.handlers:echo", "max_size": 2},
        },
        auth={"tokens": ["publish:pub-token", "admin:admin-token"]},
    )


def fast_path(client: Client) -> FastPublish:
    fast = client.app.extensions["spool.fastpath"]
    assert isinstance(fast, FastPublish)
    return fast


def http_count(exposition: bytes, route: str, status: int) -> str:
    prefix = f'spool_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    lines = [line for line in exposition.decode().splitlines() if line.startswith(prefix)]
    return lines[0].removeprefix(prefix) if lines else "absent"


async def test_client_for_runs_the_publish_fast_path(settings: Settings) -> None:
    async with client_for(settings) as (client, _):
        r = await client.post(ONE.format("work"), json={"body": 1}, headers=PUB)
        assert r.status_code == 202
        assert fast_path(client).answered == 1


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
async def test_full_queue_on_the_fast_path_runs_the_publish_once(
    settings: Settings, batch: bool
) -> None:
    broker = RecordingBroker(settings)
    async with client_for(settings, broker) as (client, runtime):
        await runtime.broker.pause("held")
        for i in range(2):
            r = await client.post(ONE.format("held"), json={"body": i}, headers=PUB)
            assert r.status_code == 202
        assert broker.publishes == 2
        path, doc = ONE.format("held"), cast(dict[str, Any], {"body": 9})
        if batch:
            path, doc = path + "/batch", {"messages": [{"body": 9}]}
        r = await client.post(path, json=doc, headers=PUB)
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
        assert r.headers["retry-after"] == "1" and r.headers["x-request-id"]
        assert broker.publishes == 3  # the refused publish ran once, not again in the route
        assert fast_path(client).refused == 1


@pytest.mark.parametrize(
    "route", ["/v1/queues/<queue>/messages", "/v1/queues/<queue>/messages/batch"]
)
async def test_unexpected_broker_error_on_the_fast_path_is_a_logged_counted_500_problem(
    settings: Settings, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RecordingBroker(settings)
    broker.failure = RuntimeError("the disk caught fire")
    batch = route.endswith("/batch")
    path = ONE.format("work") + ("/batch" if batch else "")
    doc = {"messages": [{"body": 1}]} if batch else {"body": 1}
    async with client_for(settings, broker) as (client, runtime):
        with caplog.at_level(logging.INFO):
            r = await client.post(path, json=doc, headers={**PUB, "X-Request-ID": "rid-500"})
        assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
        assert r.headers["x-request-id"] == "rid-500"
        problem = await r.get_json()
        assert problem["status"] == 500 and "fire" not in problem["detail"]
        assert http_count(runtime.metrics.render(), route, 500) == "1.0"
        assert broker.publishes == 1
    access = [rec for rec in caplog.records if rec.name == "service.access"]
    assert [(rec.status, rec.route, rec.request_id) for rec in access] == [  # type: ignore[attr-defined]
        (500, route, "rid-500")
    ]
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert errors[0].request_id == "rid-500"  # type: ignore[attr-defined]


async def test_an_exception_that_escapes_quart_is_a_logged_counted_500_problem(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(settings) as (client, runtime):
        app = client.app

        # A header value Quart cannot encode (a lone surrogate is not UTF-8) fails while it
        # sends the answer, after every handler and hook of its own has run.
        async def unsendable() -> Response:
            return Response("x", headers={"X-Broken": "\ud800"})

        app.add_url_rule("/unsendable", view_func=unsendable)
        with caplog.at_level(logging.INFO):
            r = await client.get("/unsendable", headers={"X-Request-ID": "rid-escape"})
        assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
        assert r.headers["x-request-id"] == "rid-escape"
        assert (await r.get_json())["status"] == 500
        text = runtime.metrics.render().decode()
        assert 'spool_http_requests_total{method="GET",route="unmatched",status="500"} 1.0' in text
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert errors and errors[-1].request_id == "rid-escape"  # type: ignore[attr-defined]
    assert [
        rec.status  # type: ignore[attr-defined]
        for rec in caplog.records
        if rec.name == "service.access" and rec.request_id == "rid-escape"  # type: ignore[attr-defined]
    ][-1] == 500


async def call(app: Any, scope: dict[str, Any], body: bytes) -> tuple[int, dict[bytes, bytes]]:
    """One raw ASGI exchange with the whole stack, as Hypercorn would make it."""
    sent: list[dict[str, Any]] = []
    events = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


async def test_a_content_length_too_long_for_int_goes_to_the_route(settings: Settings) -> None:
    # h11 refuses such a head; an ASGI server that does not must not crash the fast path.
    # The route answers as werkzeug reads the head: a length it cannot parse is no length.
    async with client_for(settings) as (client, _):
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": ONE.format("work"),
            "raw_path": ONE.format("work").encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"t"),
                (b"authorization", b"Bearer pub-token"),
                (b"content-type", b"application/json"),
                (b"content-length", b"9" * 5000),
            ],
        }
        status, headers = await call(client.app, scope, b'{"body": 1}')
        assert status == 202 and headers[b"x-request-id"]
        assert fast_path(client).answered == 0
