"""A failed attempt is one log line with the error's type and message; its traceback (thirty
lines for a webhook whose receiver is down) goes to the log only at `log.level = "debug"`."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Server, toml_config

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback URL whose port refuses every connection: bound by this test (so nothing
    else can take it meanwhile) but never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def webhook_server(
    server_factory: Callable[..., Server], tmp_path: Path, url: str, level: str
) -> Server:
    queues = f"""
[queues.webhooks]
handler = "service.handlers:webhook"
mode = "async"
max_retries = 1
retry_backoff_s = 0
options = {{ url = "{url}", timeout_s = 5 }}
"""
    env = {"SPOOL_LOG__LEVEL": level}
    return server_factory(toml_config(tmp_path, queues), env=env)


def fail_one_message(server: Server) -> None:
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        mid = client.post("/v1/queues/webhooks/messages", json={"body": {"a": 1}}).json()["id"]
        done = client.get(f"/v1/messages/{mid}?wait=20").json()
    assert done["status"] == "failed" and done["attempts"] == 2, done
    assert done["error"]["type"] == "ConnectError", done
    assert server.stop() == 0


def test_a_failed_attempt_is_one_log_line_without_its_traceback_at_info(
    server_factory: Callable[..., Server], tmp_path: Path, refusing_url: str
) -> None:
    server = webhook_server(server_factory, tmp_path, refusing_url, "info")
    fail_one_message(server)
    log = server.log()
    failed = [line for line in log.splitlines() if "handler failed:" in line]
    assert len(failed) == 2, log  # one per attempt
    for line in failed:
        assert " WARNING service.consumer: handler failed: ConnectError: " in line, line
        assert "queue=webhooks" in line and "attempt=" in line, line
    assert "Traceback" not in log, log
    assert all(TIMESTAMP.match(line) for line in log.splitlines()), log


def test_a_failed_attempt_logs_its_traceback_at_debug(
    server_factory: Callable[..., Server], tmp_path: Path, refusing_url: str
) -> None:
    server = webhook_server(server_factory, tmp_path, refusing_url, "debug")
    fail_one_message(server)
    log = server.log()
    assert log.count("handler failed: ConnectError: ") == 2, log
    # The traceback rides along with the line it explains, down to where the handler called.
    first = log.split("handler failed: ConnectError: ", 1)[1]
    assert first.split("\n", 1)[1].startswith("Traceback (most recent call last):"), log
    assert 'service/handlers/builtin.py", line' in first, log


def test_line_breaks_in_an_error_message_stay_on_the_failure_line(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = '[queues.q]\nhandler = "tests.handlers:fail_with_text"\nmax_retries = 0\n'
    server = server_factory(toml_config(tmp_path, queues))
    server.start()
    text = "first line\nINFO fake: second line\r\nthird"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        mid = client.post("/v1/queues/q/messages", json={"body": text}).json()["id"]
        done = client.get(f"/v1/messages/{mid}?wait=20").json()
    assert done["status"] == "failed" and done["error"]["message"] == text, done
    assert server.stop() == 0
    log = server.log()
    assert "handler failed: ValueError: first line\\nINFO fake: second line\\r\\nthird [" in log
    assert all(TIMESTAMP.match(line) for line in log.splitlines()), log
