"""Graceful stop over a real process and real signals: nothing acknowledged is lost.

Each test starts `python -m service` (memory backend), loads it, signals it, checks what
clients see during the drain, the exit code and time, then restarts it on the same config
and follows every 202'd message to a final status.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, toml_config
from .shutdown_load import (
    Publisher,
    follow_to_final,
    open_long_poll,
    read_answer,
    running_count,
    snapshot_lines,
    status_of,
)
from .waits import gate_body, started_ids, wait_read, wait_until

pytestmark = pytest.mark.slow

# SPEC: a stop ends within graceful_timeout_s + 5 s, whatever the handlers do.
EXIT_MARGIN_S = 5.0


def config(tmp_path: Path, graceful_s: float, queues: str) -> str:
    return toml_config(tmp_path, queues, f"[server]\ngraceful_timeout_s = {graceful_s}\n")


def test_sigterm_under_load_drains_refuses_and_loses_nothing(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """Nothing here waits for a guessed time. The drain is held open by a handler blocked on
    a gate the test opens when it has seen what it checks, and the snapshot's statuses come
    from queues that cannot move: a paused queue, an hour's delay, a paused retry."""
    queues = """
[queues.work]
handler = "tests.handlers:async_sleep"
mode = "async"
concurrency = 32
max_size = 100000
[queues.gated]
handler = "tests.handlers:gate_async"
mode = "async"
concurrency = 1
[queues.held]
handler = "tests.handlers:echo"
[queues.later]
handler = "tests.handlers:echo"
[queues.flaky]
handler = "tests.handlers:gate_async"
mode = "async"
concurrency = 5
retry_backoff_s = 3600
retry_backoff_max_s = 3600
"""
    graceful_s = 30  # the gate, not this deadline, ends the drain
    # debug: successes are logged at debug level, and the drain's are looked for below.
    server = server_factory(config(tmp_path, graceful_s, queues), env={"SPOOL_LOG__LEVEL": "debug"})
    server.start()
    client = httpx.Client(base_url=server.url, timeout=10)
    answers: dict[str, dict[str, Any]] = {}

    def publish(queue: str, **envelope: Any) -> str:
        r = client.post(f"/v1/queues/{queue}/messages", json=envelope)
        assert r.status_code == 202, r.text
        answers[r.json()["id"]] = r.json()
        return str(r.json()["id"])

    # Work of every kind the snapshot must carry, each where it cannot move on its own: an
    # hour's delay; queued on a paused queue; retrying from an attempt that failed after its
    # queue was paused, so it cannot run again (one whose jittered backoff ends before the
    # stop is queued instead: of five, all of them 1 time in 10^12). And some due soon.
    parked = [publish("later", body=i, delay_s=3600) for i in range(5)]
    due_soon = [publish("later", body=i, delay_s=4) for i in range(5)]
    retrying = [publish("flaky", body=gate_body(tmp_path, "flaky", fail=True)) for _ in range(5)]
    wait_until(lambda: len(started_ids(tmp_path / "flaky.started")) == 5, "5 attempts began")
    assert client.post("/v1/queues/flaky/pause").status_code == 200
    (tmp_path / "flaky").touch()
    wait_until(lambda: all(status_of(client, m) != "running" for m in retrying), "5 failed")
    assert client.post("/v1/queues/held/pause").status_code == 200
    held = [publish("held", body=i) for i in range(5)]
    # One handler running until its gate opens, and one message queued behind it that only a
    # consumer taking work during the drain can run.
    running = publish("gated", body=gate_body(tmp_path, "drain"))
    behind = publish("gated", body=gate_body(tmp_path, "drain"))
    wait_until(lambda: started_ids(tmp_path / "drain.started") == [running], "gate started")

    publishers = [
        Publisher(server.url, "work", lambda n: {"body": {"seconds": 0.2, "n": n}})
        for _ in range(3)
    ]
    for p in publishers:
        p.start()
    wait_until(lambda: sum(len(p.accepted) for p in publishers) > 50, "50 publishes accepted")
    # A client holding a long-poll open must not hold up the stop.
    long_poll = open_long_poll(server.port, parked[0])
    wait_read(server, long_poll)
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    wait_until(lambda: client.get("/readyz").status_code == 503, "/readyz turned 503")
    ready = client.get("/readyz")
    assert ready.json()["checks"]["draining"]["ok"] is False
    assert client.get("/healthz").status_code == 200  # liveness holds through the drain
    wait_until(lambda: any(p.refused for p in publishers), "a publish refused while draining")
    assert status_of(client, behind) == "queued"  # still waiting behind the gate
    client.close()
    (tmp_path / "drain").touch()  # the gated handler ends; `behind` is taken during the drain

    code = server.wait_exit(graceful_s + EXIT_MARGIN_S + 5)
    took = time.monotonic() - signalled
    for p in publishers:
        p.halt.set()
        p.join(10)
    assert code == 0, server.log()
    assert took < graceful_s + EXIT_MARGIN_S, f"stop took {took:.1f}s"
    answer = read_answer(long_poll)
    assert answer.startswith(b"HTTP/1.1 200"), answer  # woken with the current state

    refused = [r for p in publishers for r in p.refused]
    for r in refused:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["Retry-After"]) >= 1
    accepted = [mid for p in publishers for mid in p.accepted]
    assert len(accepted) > 50

    # Consumers kept taking queued work during the drain.
    during = server.log().split("draining: up to", 1)[1].splitlines()
    for step in ("message started", "message succeeded"):
        assert any(step in line and f"message_id={behind}" in line for line in during), step
    print(f"accepted {len(accepted)}, refused {len(refused)} while draining, stop {took:.2f}s")

    snapshot = tmp_path / "snapshot.jsonl"
    records = {r["id"]: r for r in snapshot_lines(snapshot)}
    statuses = {r["status"] for r in records.values()}
    assert {"scheduled", "retrying", "queued"} <= statuses, statuses
    assert {records[mid]["status"] for mid in parked} == {"scheduled"}
    assert {records[mid]["status"] for mid in held} == {"queued"}
    assert {records[mid]["attempts"] for mid in retrying} == {1}
    assert not (tmp_path / ".snapshot.jsonl.tmp").exists()

    server2 = server_factory(config(tmp_path, graceful_s, queues), port=server.port)
    server2.start()
    assert not snapshot.exists(), "the snapshot is deleted once loaded"
    with httpx.Client(base_url=server2.url, timeout=10) as client2:
        assert client2.get("/v1/queues/held").json()["paused"] is True  # pauses come back too
        assert client2.post("/v1/queues/held/resume").status_code == 200
        for mid in parked:
            doc = client2.get(f"/v1/messages/{mid}").json()
            assert doc["status"] == "scheduled"
            assert doc["scheduled_for"] == answers[mid]["scheduled_for"]  # not restarted
    every = accepted + due_soon + held + [running, behind]
    final = follow_to_final(server2.url, every, timeout=120)
    lost = [mid for mid in every if final[mid]["status"] != "succeeded"]
    assert lost == []
    assert server2.stop() == 0


def test_handler_that_ignores_cancellation_does_not_hold_up_the_exit(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = """
[queues.stuck]
handler = "tests.handlers:stubborn"
mode = "async"
concurrency = 2
timeout_s = 120
"""
    server = server_factory(config(tmp_path, 2, queues))
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ids = [
            client.post("/v1/queues/stuck/messages", json={"body": {"seconds": 60}}).json()["id"]
            for _ in range(3)
        ]
        wait_until(lambda: running_count(client, "stuck") >= 2, "two running", timeout=10)
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.wait_exit(2 + EXIT_MARGIN_S + 10)
    took = time.monotonic() - signalled
    assert code == 0, server.log()
    assert took < 2 + EXIT_MARGIN_S, f"stop took {took:.1f}s"

    records = {r["id"]: r for r in snapshot_lines(tmp_path / "snapshot.jsonl")}
    assert set(ids) <= set(records)
    # The two that ran are given back as queued with their attempt counted.
    assert sorted(records[mid].get("attempts", 0) for mid in ids) == [0, 1, 1]
    assert {records[mid]["status"] for mid in ids} == {"queued"}

    server2 = server_factory(config(tmp_path, 2, queues), port=server.port)
    server2.start()
    with httpx.Client(base_url=server2.url, timeout=10) as client:
        for mid in ids:
            assert client.get(f"/v1/messages/{mid}").status_code == 200
    server2.signal(signal.SIGINT)  # SIGINT stops it the same way
    assert server2.wait_exit(2 + EXIT_MARGIN_S + 10) == 0, server2.log()


def test_second_signal_skips_the_drain_and_snapshots_at_once(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = """
[queues.slow]
handler = "tests.handlers:sleep"
mode = "thread"
concurrency = 2
timeout_s = 120
"""
    server = server_factory(config(tmp_path, 30, queues))
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ids = [
            client.post("/v1/queues/slow/messages", json={"body": {"seconds": 20}}).json()["id"]
            for _ in range(4)
        ]
        wait_until(lambda: running_count(client, "slow") >= 2, "two running", timeout=10)
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_log("draining: up to")  # the first signal has begun the drain
    server.signal(signal.SIGINT)
    code = server.wait_exit(30)
    took = time.monotonic() - signalled
    assert code == 0, server.log()
    assert took < EXIT_MARGIN_S, f"a second signal should skip the 30 s drain; took {took:.1f}s"
    assert "skipping the drain" in server.log()
    records = {r["id"]: r for r in snapshot_lines(tmp_path / "snapshot.jsonl")}
    assert sorted(records[mid].get("attempts", 0) for mid in ids) == [0, 0, 1, 1]
    assert {records[mid]["status"] for mid in ids} == {"queued"}


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"this is not json\n", "not a Spool snapshot"),
        (b'{"format":"other-tool","version":1}\n', "not a Spool snapshot"),
        (b'{"format":"spool-snapshot","version":1}\n{"id": 12\n', "line 2 is corrupt"),
    ],
)
def test_corrupt_or_foreign_snapshot_stops_the_start_and_is_kept(
    server_factory: Callable[..., Server], tmp_path: Path, content: bytes, expect: str
) -> None:
    snapshot = tmp_path / "snapshot.jsonl"
    snapshot.write_bytes(content)
    server = server_factory(config(tmp_path, 2, '[queues.q]\nhandler = "tests.handlers:echo"\n'))
    server.start(wait_ready=False)
    code = server.wait_exit(30)
    assert code == 2, server.log()
    assert expect in server.log()
    assert "Traceback" not in server.log()
    assert snapshot.read_bytes() == content


def test_a_publish_whose_body_ends_during_the_drain_is_refused(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """A slow upload that began before the signal must not get a 202 after the snapshot."""
    queues = """
[queues.q]
handler = "tests.handlers:echo"
[queues.gated]
handler = "tests.handlers:gate_async"
mode = "async"
"""
    graceful_s = 30  # the gate, not this deadline, ends the drain
    server = server_factory(config(tmp_path, graceful_s, queues))
    server.start()
    # A handler that runs until the test opens its gate holds the drain open.
    gate = {"body": gate_body(tmp_path, "drain")}
    httpx.post(f"{server.url}/v1/queues/gated/messages", json=gate).raise_for_status()
    wait_until(lambda: len(started_ids(tmp_path / "drain.started")) == 1, "gate started")
    body = b'{"body": "late"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body[:5]
        )
        wait_read(server, sock)  # the upload has begun, as far as the server knows
        server.signal(signal.SIGTERM)
        server.wait_log("draining: up to")
        sock.sendall(body[5:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    (tmp_path / "drain").touch()
    assert server.wait_exit(graceful_s + EXIT_MARGIN_S + 5) == 0
