"""Readiness, metrics, auth and request ids, in process (app.test_app + test_client)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from quart.typing import TestClientProtocol as Client

from service import Runtime, Settings
from service.api.auth import Authenticator
from service.config import AuthSettings

from .conftest import client_for
from .waits import until

# SPEC "Metrics": every name is part of the contract (counters with their _total samples).
SPEC_METRICS = {
    "spool_messages_published": "counter",
    "spool_messages_processed": "counter",
    "spool_attempt_timeouts": "counter",
    "spool_queue_depth": "gauge",
    "spool_queue_wait_seconds": "histogram",
    "spool_processing_seconds": "histogram",
    "spool_consumers": "gauge",
    "spool_executor_busy": "gauge",
    "spool_event_loop_lag_seconds": "histogram",
    "spool_http_requests": "counter",
    "spool_http_request_duration_seconds": "histogram",
}
QUEUES = {
    "work": {"handler": "tests.handlers:echo", "concurrency": 2},
    "other": {"handler": "tests.handlers:async_echo", "mode": "async", "concurrency": 1},
}
TOKENS = ["admin:adm", "read:rd", "publish:pub", "publish+read:both"]


def scrape(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def metrics_text(client: Client, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, await r.get_data()
    return await r.get_data(as_text=True)


async def test_every_spec_metric_exists_with_help_and_zero_series_per_queue(
    tmp_settings: Callable[..., Settings],
) -> None:
    async with client_for(tmp_settings(QUEUES)) as (client, _):
        text = await metrics_text(client)
    families = scrape(text)
    for name, kind in SPEC_METRICS.items():
        assert name in families, name
        assert families[name].type == kind, name
        assert families[name].documentation, f"{name} has no HELP"
    for queue in QUEUES:
        assert samples(text, "spool_messages_published_total")[(("queue", queue),)] == 0
        assert samples(text, "spool_attempt_timeouts_total")[(("queue", queue),)] == 0
        processed = samples(text, "spool_messages_processed_total")
        for outcome in ("succeeded", "retried", "failed", "cancelled", "expired"):
            assert processed[(("outcome", outcome), ("queue", queue))] == 0
        depth = samples(text, "spool_queue_depth")
        for status in ("scheduled", "queued", "running", "retrying", "dead"):
            assert depth[(("queue", queue), ("status", status))] == 0
        assert samples(text, "spool_consumers")[(("queue", queue),)] == QUEUES[queue]["concurrency"]
        assert (("le", "+Inf"), ("queue", queue)) in samples(
            text, "spool_queue_wait_seconds_bucket"
        )
    assert set(samples(text, "spool_executor_busy")) == {
        (("executor", "thread"),),
        (("executor", "process"),),
    }


async def test_http_metrics_label_routes_by_template_never_by_raw_path(
    tmp_settings: Callable[..., Settings],
) -> None:
    async with client_for(tmp_settings(QUEUES)) as (client, _):
        r = await client.post("/v1/queues/work/messages", json={"body": 1})
        mid = (await r.get_json())["id"]
        await client.get(f"/v1/messages/{mid}?wait=5")
        await client.get("/v1/messages/not-an-id-12345")
        await client.get("/no/such/path/secret-ish")
        await client.open("/healthz", method="BREW")  # type: ignore[call-arg]  # json has a default
        text = await metrics_text(client)
    assert mid not in text and "not-an-id-12345" not in text and "secret-ish" not in text
    routes = {dict(k)["route"] for k in samples(text, "spool_http_requests_total")}
    assert {"/v1/queues/<queue>/messages", "/v1/messages/<message_id>", "unmatched"} <= routes
    methods = {dict(k)["method"] for k in samples(text, "spool_http_requests_total")}
    assert methods <= {"GET", "POST", "other"}
    requests = samples(text, "spool_http_requests_total")
    key = (("method", "GET"), ("route", "/v1/messages/<message_id>"), ("status", "404"))
    assert requests[key] == 1
    assert samples(text, "spool_messages_published_total")[(("queue", "work"),)] == 1
    processed = samples(text, "spool_messages_processed_total")
    assert processed[(("outcome", "succeeded"), ("queue", "work"))] == 1


async def test_two_apps_side_by_side_have_their_own_registries(
    tmp_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    other = {"snapshot_path": str(tmp_path / "two.jsonl")}
    async with (
        client_for(tmp_settings(QUEUES)) as (one, _),
        client_for(tmp_settings(QUEUES, broker=other)) as (two, _),
    ):
        await one.post("/v1/queues/work/messages", json={"body": 1})
        first, second = await metrics_text(one), await metrics_text(two)
    assert samples(first, "spool_messages_published_total")[(("queue", "work"),)] == 1
    assert samples(second, "spool_messages_published_total")[(("queue", "work"),)] == 0


async def test_readyz_reports_every_check_and_names_a_dead_consumer(
    tmp_settings: Callable[..., Settings],
) -> None:
    async with client_for(tmp_settings(QUEUES)) as (client, _):
        r = await client.get("/readyz")
        doc = await r.get_json()
        assert r.status_code == 200 and doc["status"] == "ready"
        assert set(doc["checks"]) == {"backend", "consumers", "draining", "loop_lag", "executors"}
        assert all(check["ok"] for check in doc["checks"].values())
        consumer = next(t for t in asyncio.all_tasks() if t.get_name() == "consumer:other:0")
        consumer.cancel()
        await asyncio.wait({consumer}, timeout=10)
        assert consumer.done()
        r = await client.get("/readyz")
        doc = await r.get_json()
        assert r.status_code == 503 and doc["status"] == "not_ready"
        assert doc["checks"]["consumers"] == {"ok": False, "dead": {"other": 1}}
        assert doc["checks"]["draining"]["ok"] is True
        assert (await client.get("/healthz")).status_code == 200


async def test_readyz_fails_on_loop_lag_measured_by_the_monitor(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(QUEUES, health={"max_loop_lag_ms": 100})
    async with client_for(settings) as (client, runtime):
        time.sleep(0.6)  # noqa: ASYNC251 - blocks the loop, as a blocking handler on it would
        # The monitor's timer was due during the block, so it measures the lag at the loop's
        # next turn: wait for that measurement, not for a guessed time.
        await until(lambda: runtime.loop_lag_s * 1000 >= 100, "the lag measured")
        r = await client.get("/readyz")
        doc = await r.get_json()
        assert r.status_code == 503, doc
        assert doc["checks"]["loop_lag"]["ok"] is False
        assert doc["checks"]["loop_lag"]["lag_ms"] >= 100
        text = await metrics_text(client)
        over = samples(text, "spool_event_loop_lag_seconds_bucket")
        assert over[(("le", "0.25"),)] < over[(("le", "+Inf"),)]
        deadline = time.monotonic() + 10
        while (await client.get("/readyz")).status_code != 200:  # it recovers by itself
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def test_draining_runtime_is_not_ready_and_refuses_publishes(
    tmp_settings: Callable[..., Settings],
) -> None:
    async with client_for(tmp_settings(QUEUES)) as (client, runtime):
        runtime.draining = True  # what request_stop sets first, before any await
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert (await r.get_json())["checks"]["draining"] == {"ok": False}
        r = await client.post("/v1/queues/work/messages", json={"body": 1})
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert r.content_type == "application/problem+json"
        r = await client.post("/v1/queues/work/messages/batch", json={"messages": []})
        assert r.status_code == 503
        runtime.draining = False


async def auth_status(client: Client, method: str, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"method": method, "headers": headers}
    if method == "POST" and path.endswith("/messages"):
        kwargs["json"] = {"body": 1}
    r = await client.open(path, **kwargs)
    if r.status_code == 401:
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.content_type == "application/problem+json"
    return r.status_code


async def test_scopes_401_403_and_open_probes(tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings(QUEUES, auth={"tokens": TOKENS})
    async with client_for(settings) as (client, runtime):
        r = await client.post(
            "/v1/queues/work/messages", json={"body": 1}, headers={"Authorization": "Bearer pub"}
        )
        mid = (await r.get_json())["id"]
        table: list[tuple[str, str, dict[str | None, int]]] = [  # method, path, {token: status}
            ("POST", "/v1/queues/work/messages", {None: 401, "rd": 403, "pub": 202, "adm": 202}),
            ("GET", f"/v1/messages/{mid}", {None: 401, "pub": 200, "rd": 200, "adm": 200}),
            ("GET", "/v1/queues", {None: 401, "pub": 403, "rd": 200, "both": 200}),
            ("GET", "/v1/queues/work/dead", {"pub": 403, "rd": 200}),
            ("POST", "/v1/queues/work/pause", {"rd": 403, "pub": 403, "both": 403, "adm": 200}),
            ("POST", "/v1/queues/work/resume", {"adm": 200}),
            ("DELETE", f"/v1/messages/{mid}", {"rd": 403, "pub": 403, "adm": 409}),
            ("GET", "/metrics", {None: 401, "pub": 403, "rd": 200}),
            ("GET", "/healthz", {None: 200, "wrong": 200}),
            ("GET", "/readyz", {None: 200}),
            ("GET", "/openapi.json", {None: 200}),
            ("GET", "/v1/queues", {"wrong": 401, "ad": 401, "admx": 401}),
        ]
        for method, path, expected in table:
            for token, status in expected.items():
                got = await auth_status(client, method, path, token)
                assert got == status, (method, path, token, got)
        for header in ("bearer adm", "BEARER  adm ", "Bearer\tadm"):
            r = await client.get("/v1/queues", headers={"Authorization": header})
            assert r.status_code == (401 if "\t" in header else 200), header
        del runtime


async def test_public_metrics_opens_only_metrics(tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings(QUEUES, auth={"tokens": TOKENS, "public_metrics": True})
    async with client_for(settings) as (client, _):
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/v1/queues")).status_code == 401


def test_token_comparison_checks_every_token_and_hides_length() -> None:
    auth = Authenticator(AuthSettings(tokens=["admin:" + "a" * 64, "read:b"]))
    assert auth.scopes_for("Bearer b") == frozenset({"read"})
    assert auth.scopes_for("Bearer " + "a" * 64) == frozenset({"admin"})
    digests = {len(token) for token, _ in auth._tokens}
    assert digests == {32}  # stored as digests: the comparison is of equal lengths


async def test_request_id_is_echoed_or_generated(tmp_settings: Callable[..., Settings]) -> None:
    async with client_for(tmp_settings(QUEUES)) as (client, _):
        r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert r.headers["X-Request-ID"] == "abc-123"
        r = await client.get("/healthz")
        generated = r.headers["X-Request-ID"]
        assert len(generated) == 32
        r = await client.get("/healthz", headers={"X-Request-ID": "x" * 500})
        assert r.headers["X-Request-ID"] != "x" * 500  # too long to trust: replaced
        r = await client.get("/nope", headers={"X-Request-ID": "on-errors-too"})
        assert r.status_code == 404 and r.headers["X-Request-ID"] == "on-errors-too"


async def test_runtime_owns_its_registry(tmp_settings: Callable[..., Settings]) -> None:
    one, two = Runtime(tmp_settings(QUEUES)), Runtime(tmp_settings(QUEUES))
    assert one.metrics.registry is not two.metrics.registry
    one.executors.shutdown()
    two.executors.shutdown()
