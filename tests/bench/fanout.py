"""B10 event fan-out: what open `GET /v1/events` streams cost publishing. The same server is
measured with STREAMS clients reading every event at full speed and with none (A B A B);
the readers run in their own process beside wrk, so their own reading costs the server
nothing and the ratio is the server's cost of feeding them."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .harness import (
    LOAD_CPU,
    ROOT,
    BenchFailure,
    Mode,
    Result,
    Server,
    admin,
    base_env,
    drain_and_check,
    pair_ratios,
    pinned,
    serving,
    spool_server,
    summarise,
    workdir,
)
from .http_cases import PUBLISH_QUEUE, RETENTION, Publisher

STREAMS = 50
OPEN_TIMEOUT_S = 30.0


def streams_open(url: str) -> int:
    count: int = httpx.get(f"{url}/v1/node", timeout=10).json()["streams"]
    return count


def wait_streams(url: str, count: int) -> None:
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while (current := streams_open(url)) != count:
        if time.monotonic() > deadline:
            raise BenchFailure(f"{current} event streams open, expected {count}")
        time.sleep(0.05)


@contextmanager
def readers(url: str, count: int, out: list[list[dict[str, Any]]]) -> Iterator[None]:
    """`count` streams read by tests.bench.sse_readers while the block runs; their figures
    (one dict per stream) are appended to `out` once they have stopped."""
    proc = subprocess.Popen(
        pinned(LOAD_CPU, [sys.executable, "-m", "tests.bench.sse_readers", url, str(count)]),
        cwd=ROOT,
        env=base_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_streams(url, count)
        yield
    finally:
        stdout, _ = proc.communicate(timeout=60)  # closes stdin: the readers stop
        out.append([json.loads(line) for line in stdout.splitlines() if line.strip()])
    wait_streams(url, 0)  # the reference runs with none


def server_cpu_s(server: Server) -> float:
    """CPU seconds the server process has used (user + system), from /proc."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_streams(runs: list[list[dict[str, Any]]]) -> int:
    """Every stream of every run answered 200, stayed open to the end and carried both
    kinds of event; returns the message events delivered in all."""
    delivered = 0
    for run in runs:
        if len(run) != STREAMS:
            raise BenchFailure(f"{len(run)} streams reported, expected {STREAMS}")
        for stream in run:
            if not stream["status"].startswith("HTTP/1.1 200"):
                raise BenchFailure(f"a stream answered {stream['status']!r}")
            if stream["ended"] or not stream["queues"] or not stream["messages"]:
                raise BenchFailure(f"a stream ended early or carried no events: {stream}")
            delivered += stream["messages"]
    return delivered


def b10(mode: Mode) -> Result:
    result = Result(
        "B10",
        "event fan-out",
        f"publish req/s with {STREAMS} reading /v1/events streams ÷ with none",
    )
    runs: list[list[dict[str, Any]]] = []
    with workdir() as tmp:
        spool = spool_server(tmp, "spool", PUBLISH_QUEUE, RETENTION)
        with serving(spool):
            admin(spool.url, "/v1/queues/bench/pause")
            plain = Publisher(spool, mode)
            plain(1)

            cpu: dict[str, list[float]] = {"streamed": [], "plain": []}

            def measured(kind: str) -> float:
                """plain(), noting the server's CPU time per publish (less noisy than rates
                on a shared machine: what the streams cost, whatever else runs)."""
                before, accepted = server_cpu_s(spool), plain.accepted
                rate = plain()
                cpu[kind].append((server_cpu_s(spool) - before) / (plain.accepted - accepted))
                return rate

            def streamed() -> float:
                with readers(spool.url, STREAMS, runs):
                    return measured("streamed")

            subjects, references, ratios = pair_ratios(
                mode.pairs, streamed, lambda: measured("plain")
            )
            delivered = check_streams(runs)
            doc = drain_and_check(spool.url, "bench", plain.accepted)
            result.checks.append(
                f"{doc['counts']['succeeded']} messages all succeeded; {len(runs)} runs of "
                f"{STREAMS} streams, each answered 200, stayed open and carried events "
                f"({delivered} message events in all)"
            )
            result.figures["message_events_delivered"] = delivered
            per_publish = {k: round(statistics.median(v) * 1e6) for k, v in cpu.items()}
            result.figures["server_cpu_us_per_publish"] = per_publish
            result.note = (
                f"server CPU a publish {per_publish['streamed']} vs {per_publish['plain']} µs"
            )
    return summarise(result, subjects, references, ratios, at_least=0.85, unit="req/s")
