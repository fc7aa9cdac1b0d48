"""Operations over a real `python -m service`: logs, the start-up auth warning, promtool on a
live scrape, and a loop that stays free while every consumer is busy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import Server, toml_config
from .waits import gate_body, started_ids, wait_until

pytestmark = pytest.mark.slow

SECRET_TOKEN = "tok-6f1d2c-never-logged"
SECRET_BODY = "body-b7e9a1-never-logged"


def json_lines(server: Server) -> list[dict[str, object]]:
    lines = [line for line in server.log().splitlines() if line.strip()]
    docs = []
    for line in lines:
        doc = json.loads(line)  # every line is one JSON document
        assert isinstance(doc, dict), line
        docs.append(doc)
    return docs


def test_json_logs_one_line_per_event_with_ids_and_no_secrets(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = """
[queues.work]
handler = "tests.handlers:echo"
[queues.broken]
handler = "tests.handlers:fail"
max_retries = 0
"""
    extra = f'[auth]\ntokens = ["admin:{SECRET_TOKEN}"]\n'
    # debug: a success is logged at debug level, a failure at info.
    env = {"SPOOL_LOG__FORMAT": "json", "SPOOL_LOG__LEVEL": "debug"}
    server = server_factory(toml_config(tmp_path, queues, extra), env=env)
    server.start()
    auth = {"Authorization": f"Bearer {SECRET_TOKEN}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as client:
        r = client.post(
            "/v1/queues/work/messages",
            json={"body": {"secret": SECRET_BODY}},
            headers={"X-Request-ID": "req-42"},
        )
        assert r.headers["X-Request-ID"] == "req-42"
        mid = r.json()["id"]
        assert client.get(f"/v1/messages/{mid}?wait=10").json()["status"] == "succeeded"
        r = client.post("/v1/queues/broken/messages", json={"body": 1})
        failed = client.get(f"/v1/messages/{r.json()['id']}?wait=10").json()
        assert failed["status"] == "failed"
        assert failed["error"]["type"] == "ValueError"
        assert "Traceback" not in json.dumps(failed)  # the traceback is in the log only
        client.get("/v1/queues", headers={"Authorization": "Bearer wrong-token-xyz"})
    assert server.stop() == 0
    docs = json_lines(server)
    text = server.log()
    assert SECRET_TOKEN not in text and SECRET_BODY not in text and "wrong-token-xyz" not in text
    for doc in docs:
        assert {"ts", "level", "logger", "msg"} <= set(doc)
    access = [d for d in docs if d["logger"] == "service.access"]
    publish = next(d for d in access if d.get("request_id") == "req-42")
    assert publish["method"] == "POST" and publish["status"] == 202
    assert publish["route"] == "/v1/queues/<queue>/messages"
    assert isinstance(publish["duration_ms"], float)
    assert all(isinstance(d.get("request_id"), str) and d["request_id"] for d in access)
    done = next(d for d in docs if d.get("message_id") == mid and d.get("outcome"))
    assert done["queue"] == "work" and done["attempt"] == 1 and done["outcome"] == "succeeded"
    assert isinstance(done["duration_ms"], float) and done["level"] == "debug"
    started = next(d for d in docs if d.get("message_id") == mid and d["msg"] == "message started")
    assert started["attempt"] == 1 and started["level"] == "debug"
    dead = next(d for d in docs if d.get("outcome") == "failed")
    assert dead["queue"] == "broken" and dead["level"] == "info"
    handler_failed = next(d for d in docs if "handler failed" in str(d["msg"]))
    assert "Traceback" in str(handler_failed["msg"]) + str(handler_failed.get("exc", ""))
    assert handler_failed["queue"] == "broken"
    assert not any("auth.tokens is empty" in str(d["msg"]) for d in docs)


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_no_tokens_on_a_public_bind_logs_a_warning_at_start(
    server_factory: Callable[..., Server], tmp_path: Path, host: str, warned: bool
) -> None:
    from .conftest import free_port

    port = free_port()
    queues = '[queues.q]\nhandler = "tests.handlers:echo"\n'
    server = server_factory(
        toml_config(tmp_path, queues), env={"SPOOL_SERVER__BIND": f"{host}:{port}"}, port=port
    )
    server.start()
    assert server.stop() == 0
    assert ("auth.tokens is empty" in server.log()) is warned


def test_promtool_accepts_a_live_scrape(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("SPOOL_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required (SPOOL_REQUIRE_PROMTOOL is set) but not installed")
        pytest.skip("promtool not installed (Debian package prometheus); .ci/run installs it")
    queues = '[queues.q]\nhandler = "tests.handlers:flaky"\nretry_backoff_s = 0\n'
    server = server_factory(toml_config(tmp_path, queues))
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        mid = client.post("/v1/queues/q/messages", json={"body": {"succeed_on": 2}}).json()["id"]
        client.get(f"/v1/messages/{mid}?wait=10")
        client.get("/no/such/route")
        scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrape.content, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == b"" and result.stderr == b""
    assert b'spool_messages_processed_total{outcome="retried",queue="q"} 1.0' in scrape.content
    assert server.stop() == 0


def test_loop_stays_free_while_blocking_and_cpu_bound_handlers_fill_every_consumer(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = """
[executor]
threads = 4
processes = 2
[queues.blocking]
handler = "tests.handlers:gate"
mode = "thread"
concurrency = 4
[queues.cpu]
handler = "tests.handlers:spin_until"
mode = "process"
concurrency = 2
"""
    server = server_factory(toml_config(tmp_path, queues))
    server.start(timeout=60)
    # Every handler runs (blocking, or spinning on the CPU) until the test opens the gate, so
    # the consumers stay full for the whole measurement however slow the machine is.
    gate = gate_body(tmp_path, "release")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for queue, count in (("blocking", 8), ("cpu", 4)):
            batch = {"messages": [{"body": gate}] * count}
            assert client.post(f"/v1/queues/{queue}/messages/batch", json=batch).status_code == 202
        deadline = time.monotonic() + 20
        while True:
            running = {
                q: client.get(f"/v1/queues/{q}").json()["depth"]["running"]
                for q in ("blocking", "cpu")
            }
            if running == {"blocking": 4, "cpu": 2}:
                break
            assert time.monotonic() < deadline, running
            time.sleep(0.05)
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            timings.append(time.perf_counter() - started)
            time.sleep(0.05)
        busy = client.get("/metrics").text
        (tmp_path / "release").touch()
    assert 'spool_executor_busy{executor="thread"} 4.0' in busy
    assert 'spool_executor_busy{executor="process"} 2.0' in busy
    assert max(timings) < 0.5, f"/healthz took up to {max(timings):.3f}s"
    print(
        f"healthz under load: median {statistics.median(timings) * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms"
    )
    assert server.stop() == 0


def session_processes(sid: int) -> list[str]:
    """Processes (zombies included) still in the session `sid`, as 'pid state name'."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        fields = text[name_end + 2 :].split()
        if int(fields[3]) == sid:  # state ppid pgrp session
            left.append(f"{stat.parent.name} {fields[0]} {text[text.index('(') + 1 : name_end]}")
    return left


def test_stop_leaves_no_process_behind(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = """
[queues.cpu]
handler = "tests.handlers:spin_until"
mode = "process"
concurrency = 2
[queues.blocking]
handler = "tests.handlers:gate"
mode = "thread"
"""
    server = server_factory(toml_config(tmp_path, queues, "[server]\ngraceful_timeout_s = 1\n"))
    server.start(timeout=60)
    # Gates the test never opens: both handlers still run when the drain's deadline passes.
    gate = gate_body(tmp_path, "never")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post("/v1/queues/cpu/messages", json={"body": gate})
        client.post("/v1/queues/blocking/messages", json={"body": gate})
        wait_until(lambda: len(started_ids(tmp_path / "never.started")) == 2, "both started")
    assert server.process is not None
    sid = server.process.pid
    assert server.stop() == 0
    deadline = time.monotonic() + 5
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], left
    assert "leaked" not in server.log() and "Warning" not in server.log()


def run_healthcheck(server: Server, env: dict[str, str] | None = None) -> int:
    result = subprocess.run(
        [sys.executable, "-m", "service", "healthcheck", "--config", str(server.config_path)],
        env={**server.env, **(env or {})},
        capture_output=True,
        timeout=30,
    )
    return result.returncode


def test_healthcheck_command_follows_readiness(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = '[queues.q]\nhandler = "tests.handlers:gate"\nconcurrency = 1\n'
    extra = "[server]\ngraceful_timeout_s = 30\n"  # the gate, not this deadline, ends the drain
    server = server_factory(toml_config(tmp_path, queues, extra))
    server.start()
    # Through a proxy that does not exist, as a container's environment may say.
    assert run_healthcheck(server, {"http_proxy": "http://127.0.0.1:9"}) == 0
    bound_any = {"SPOOL_SERVER__BIND": f"0.0.0.0:{server.port}"}
    assert run_healthcheck(server, bound_any) == 0  # 0.0.0.0 is probed on 127.0.0.1
    gate = gate_body(tmp_path, "release")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post("/v1/queues/q/messages", json={"body": gate})
        # The handler runs until the gate opens: it holds the drain open for the checks.
        wait_until((tmp_path / "release.started").exists, "the handler started")
        server.signal(signal.SIGTERM)
        wait_until(lambda: client.get("/readyz").status_code == 503, "draining")
        assert run_healthcheck(server) == 1  # draining: /readyz answers 503
        assert client.get("/healthz").status_code == 200  # 1 came from the drain, not an exit
    (tmp_path / "release").touch()
    assert server.wait_exit(30) == 0
    assert run_healthcheck(server) == 1  # nothing listens
