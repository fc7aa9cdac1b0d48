"""The in-process benchmarks (B3 engine, B4 peers, B6 CPU scaling, B8 memory) and B4's HTTP
leg (Spool ÷ the Flask + queue.Queue + thread pattern), driven from the parent process."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

from .harness import (
    LOAD_CPU,
    ROOT,
    SERVER_CPU,
    BenchFailure,
    Mode,
    Result,
    Server,
    base_env,
    drain_and_check,
    module_server,
    pair_ratios,
    pinned,
    serving,
    spool_server,
    summarise,
    workdir,
    wrk,
)

ONE = b'{"body":{"order":12345,"sku":"A-17","qty":2}}'


def child(case: str, *, pairs: int, n: int, cpu: int | None = SERVER_CPU) -> Any:
    argv = [sys.executable, "-m", "tests.bench.engine", case, "--pairs", str(pairs), "-n", str(n)]
    proc = subprocess.run(
        pinned(cpu, argv),
        cwd=ROOT,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the service's info log, one line per message
        text=True,
        timeout=600,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise BenchFailure(f"engine {case} failed (exit {proc.returncode}): {proc.stdout[-500:]}")


def _from_child(result: Result, doc: dict[str, list[float]], **target: float) -> Result:
    ratios = [a / b for a, b in zip(doc["subject"], doc["reference"], strict=True)]
    return summarise(result, doc["subject"], doc["reference"], ratios, unit="msgs/s", **target)


def b3(mode: Mode) -> Result:
    result = Result(
        "B3",
        "engine",
        "in-process publish→done msgs/s, ~20 µs sync handler: Spool ÷ asyncio.Queue + "
        "consumers + run_in_executor",
    )
    n = 5_000 if mode.quick else 20_000
    _from_child(result, child("b3", pairs=mode.pairs, n=n), at_least=0.7)
    result.checks.append(f"every one of {n} messages succeeded, on both sides, in every run")
    return result


def b4(mode: Mode) -> Result:
    result = Result("B4", "peers", "B3's workload: Spool ÷ what users would pick instead")
    n = 3_000 if mode.quick else 15_000
    for case, title, target in (
        ("taskiq", "taskiq InMemoryBroker", 3.0),
        ("huey", "Huey MemoryHuey", 1.5),
    ):
        sub = Result(f"B4-{case}", title, f"Spool engine ÷ {title}, in process")
        _from_child(sub, child(case, pairs=mode.pairs, n=n), at_least=target)
        sub.checks.append(f"every one of {n} messages handled, on both sides")
        result.extra.append(sub)
    result.extra.append(_flask(mode))
    result.met = all(s.met for s in result.extra)
    result.target = ">= 3x taskiq, >= 1.5x Huey, >= 3x Flask pattern"
    return result


FLASK_QUEUE = """
[executor]
threads = 4

[queues.bench]
handler = "tests.bench.work:small"
mode = "thread"
concurrency = 4
max_size = 5000000

[results]
max_entries = 5000000
"""


def _flask(mode: Mode) -> Result:
    sub = Result(
        "B4-flask",
        "Flask + queue.Queue + threads",
        "publish→done msgs/s over HTTP: Spool ÷ the Flask pattern (4 worker threads each)",
    )
    seconds = mode.seconds(4, 1)
    with workdir() as tmp:
        spool = spool_server(tmp, "spool", FLASK_QUEUE)
        flask = module_server(tmp, "flask", "tests.bench.flask_pattern")
        accepted = {"spool": 0, "flask": 0}
        with serving(spool, flask):

            def spool_run() -> float:
                done_before = _spool_done(spool)
                started = time.perf_counter()
                load = wrk(
                    spool.url + "/v1/queues/bench/messages",
                    seconds=seconds,
                    connections=32,
                    body=ONE,
                    cpu=LOAD_CPU,
                )
                load.check("spool publish", expect=202)
                accepted["spool"] += load.requests
                done = _wait_done(lambda: _spool_done(spool), done_before + load.requests)
                return (done - done_before) / (time.perf_counter() - started)

            def flask_run() -> float:
                done_before = _flask_done(flask)
                started = time.perf_counter()
                load = wrk(flask.url + "/enqueue", seconds=seconds, connections=32, body=ONE)
                load.check("flask enqueue", expect=202)
                accepted["flask"] += load.requests
                done = _wait_done(lambda: _flask_done(flask), done_before + load.requests)
                return (done - done_before) / (time.perf_counter() - started)

            subjects, references, ratios = pair_ratios(mode.pairs, spool_run, flask_run)
            doc = drain_and_check(spool.url, "bench", accepted["spool"])
            stats = httpx.get(flask.url + "/stats", timeout=10).json()
            if stats["done"] != stats["accepted"] or stats["accepted"] < accepted["flask"]:
                raise BenchFailure(f"flask pattern: {stats}, wrk counted {accepted['flask']}")
            sub.checks.append(
                f"Spool: {doc['counts']['succeeded']} all succeeded; Flask: {stats['done']} of "
                f"{stats['accepted']} handled"
            )
    return summarise(sub, subjects, references, ratios, at_least=3.0, unit="msgs/s")


def _spool_done(server: Server) -> int:
    doc = httpx.get(server.url + "/v1/queues/bench", timeout=10).json()
    return int(doc["counts"]["succeeded"])


def _flask_done(server: Server) -> int:
    return int(httpx.get(server.url + "/stats", timeout=10).json()["done"])


def _wait_done(read: Any, at_least: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done: int = read()
        if done >= at_least:
            return done
        time.sleep(0.02)
    raise BenchFailure(f"only {read()} of {at_least} handled after {timeout:g} s")


def b6(mode: Mode) -> Result:
    result = Result(
        "B6", "CPU scaling", "CPU-bound jobs/s (checksum, ~10 ms each): process mode ÷ thread mode"
    )
    jobs = 20 if mode.quick else 100
    # Not pinned: this one is about using both CPUs.
    _from_child(result, child("b6", pairs=mode.pairs, n=jobs, cpu=None), at_least=1.6)
    result.figures["unit"] = "jobs/s"
    result.checks.append(f"every one of {jobs} jobs succeeded in every run, both modes")
    return result


def b11(mode: Mode) -> Result:
    result = Result(
        "B11",
        "rate limit",
        "in-process publish→done msgs/s, B3's workload: a queue with rate_limit = "
        '"1000000/s" (far above capacity) ÷ the same queue unlimited',
    )
    n = 5_000 if mode.quick else 20_000
    # An even count of pairs: each queue goes first equally often (engine.limit_rates).
    _from_child(result, child("b11", pairs=mode.pairs + mode.pairs % 2, n=n), at_least=0.9)
    result.checks.append(f"every one of {n} messages succeeded on both queues, in every run")
    return result


def b8(mode: Mode) -> Result:
    result = Result(
        "B8", "memory", "RSS growth per queued message at 100,000 queued small messages"
    )
    n = 30_000 if mode.quick else 100_000  # the smoke test queues fewer, to stay short
    runs = [child("b8", pairs=1, n=n, cpu=None) for _ in range(1 if mode.quick else 2)]
    per = [float(r["bytes_per_message"]) for r in runs]
    result.ratio = statistics.median(per)
    result.spread = (min(per), max(per))
    result.met = result.ratio <= 500
    result.target = "<= 500 B"
    result.figures.update(unit="bytes/message", runs=per)
    result.checks.append(f"all {n} messages were queued, then all succeeded")
    if n != 100_000:
        result.note = f"at {n:,} queued (quick run)"
    return result
