"""Traces on a real server (`python -m service`): the publish fast path keeps the request's
traceparent, the attempt's JSON log lines (the consumer's and the handler's own) carry its
trace_id and span_id, and with OTEL_TRACES_EXPORTER set the publish and the attempt are
spans of the producer's trace, exported by the SDK. Without it nothing of OpenTelemetry is
even imported."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .conftest import ROOT, Server, toml_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
QUEUES = '[queues.q]\nhandler = "tests.handlers:trace_of"\n'


def publish_and_wait(server: Server, headers: dict[str, str]) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.post("/v1/queues/q/messages", json={"body": 1}, headers=headers)
        assert response.status_code == 202, response.text
        mid = response.json()["id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            doc: dict[str, Any] = http.get(f"/v1/messages/{mid}?wait=5").json()
            if doc["status"] == "succeeded":
                return doc
        raise AssertionError(f"message {mid} did not succeed: {doc}")


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_an_attempts_log_lines_carry_its_trace_and_span_ids(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    extra = '[log]\nformat = "json"\nlevel = "debug"\n'
    server = server_factory(toml_config(tmp_path, QUEUES, extra))
    server.start()
    done = publish_and_wait(server, {"traceparent": TRACEPARENT})
    assert done["trace"] == {"traceparent": TRACEPARENT}  # through the fast path
    span_id = done["result"]["span_id"]
    server.wait_log('"message succeeded"')
    lines = json_lines(server.log())
    mine = [line for line in lines if line.get("message_id") == done["id"]]
    assert {line["msg"] for line in mine} >= {"message started", "message succeeded"}
    handler_line = next(line for line in lines if line["msg"] == f"handler saw {done['id']}")
    for line in [*mine, handler_line]:
        assert (line.get("trace_id"), line.get("span_id")) == (TRACE_ID, span_id), line
    untraced = publish_and_wait(server, {})
    server.wait_log(f'"handler saw {untraced["id"]}"')
    for line in json_lines(server.log()):
        if untraced["id"] in (line.get("message_id"), line["msg"].rpartition(" ")[2]):
            assert "trace_id" not in line and "span_id" not in line, line


def exported_spans(text: str) -> list[dict[str, Any]]:
    """The spans the SDK's console exporter wrote (indented JSON objects among log lines)."""
    decoder = json.JSONDecoder()
    spans, at = [], 0
    while (at := text.find('{\n    "name"', at)) >= 0:
        span, end = decoder.raw_decode(text, at)
        spans.append(span)
        at = end
    return spans


def test_with_otel_the_publish_and_the_attempt_are_spans_of_the_producers_trace(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "spool-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    server = server_factory(toml_config(tmp_path, QUEUES), env=env)
    server.start()
    done = publish_and_wait(server, {"traceparent": TRACEPARENT})
    deadline = time.monotonic() + 10
    while len(spans := exported_spans(server.log())) < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    by_name = {span["name"]: span for span in spans}
    publish, process = by_name["publish q"], by_name["process q"]
    assert publish["kind"] == "SpanKind.PRODUCER" and process["kind"] == "SpanKind.CONSUMER"
    assert publish["context"]["trace_id"] == process["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert publish["parent_id"] == f"0x{PARENT_ID}"
    assert process["parent_id"] == publish["context"]["span_id"]
    assert publish["resource"]["attributes"]["service.name"] == "spool-under-test"
    assert publish["attributes"]["messaging.destination.name"] == "q"
    assert process["attributes"]["messaging.message.id"] == done["id"]
    # The message carries the publish span's context; the handler sees the attempt's span.
    assert done["trace"]["traceparent"] == f"00-{TRACE_ID}-{publish['context']['span_id'][2:]}-01"
    assert f"0x{done['result']['span_id']}" == process["context"]["span_id"]


NO_OTEL_SCRIPT = """
import asyncio, sys
from tests.conftest import client_for, make_settings
from tests.contract.helpers import wait_final

async def main():
    settings = make_settings(
        {"q": {"handler": "tests.handlers:trace_of"}}, broker={"snapshot_path": sys.argv[2]}
    )
    async with client_for(settings) as (client, _):
        response = await client.post(
            "/v1/queues/q/messages", json={"body": 1}, headers={"traceparent": sys.argv[1]}
        )
        done = await wait_final(client, (await response.get_json())["id"])
        assert done["result"]["trace_id"], done
    print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))

asyncio.run(main())
"""


def test_without_otel_configured_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    import opentelemetry.sdk.trace  # noqa: F401 - the extra is installed here: only config decides

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", NO_OTEL_SCRIPT, TRACEPARENT, str(tmp_path / "snapshot.jsonl")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
