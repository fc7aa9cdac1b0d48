"""The benchmarks over HTTP: B1 publish, B2 batch ingest, B5 loop under CPU load, B7 durable,
B9 metrics cost. Servers run as users run them (`python -m service`), pinned to one CPU, wrk
on the other."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import msgspec

from .harness import (
    BenchFailure,
    Mode,
    Result,
    Server,
    admin,
    drain_and_check,
    module_server,
    pair_ratios,
    serving,
    spool_server,
    summarise,
    workdir,
    wrk,
)
from .work import CPU_ROUNDS

CONNECTIONS = 32
BATCH_SIZE = 1000
ONE = b'{"body":{"order":12345,"sku":"A-17","qty":2}}'
BATCH = msgspec.json.encode(
    {"messages": [{"body": {"order": i, "sku": "A-17", "qty": 2}} for i in range(BATCH_SIZE)]}
)
PUBLISH_QUEUE = """
[queues.bench]
handler = "tests.bench.work:async_noop"
mode = "async"
concurrency = 4
max_size = 5000000
"""
# Retention sized for everything a run publishes, so nothing is trimmed while it is counted.
RETENTION = "[results]\nmax_entries = 5000000\n"
PUBLISH = "/v1/queues/bench/messages"


class Publisher:
    """wrk against one server's publish route, keeping the count of 202s for the final check."""

    def __init__(self, server: Server, mode: Mode, *, batch: bool = False) -> None:
        self.server = server
        self.mode = mode
        self.batch = batch
        self.accepted = 0
        # Batches run shorter: every message they publish is drained and checked after.
        self.seconds = mode.seconds(2, 1) if batch else mode.seconds(4, 1)
        self.connections = 4 if batch else CONNECTIONS

    def __call__(self, seconds: float | None = None) -> float:
        path = PUBLISH + ("/batch" if self.batch else "")
        load = wrk(
            self.server.url + path,
            seconds=seconds or self.seconds,
            connections=self.connections,
            body=BATCH if self.batch else ONE,
        )
        load.check(f"{self.server.name} {path}", expect=202)
        per_request = BATCH_SIZE if self.batch else 1
        self.accepted += load.requests * per_request
        return load.rate * per_request


def _publish_pair(
    result: Result,
    mode: Mode,
    subject: Server,
    reference: Server,
    *,
    batch: bool,
    target: float,
    seconds: float | None = None,
    connections: int | None = None,
) -> Result:
    with serving(subject, reference):
        spools = [s for s in (subject, reference) if s.name.startswith("spool")]
        for server in spools:  # publishing alone is measured; the handlers run after
            admin(server.url, "/v1/queues/bench/pause")
        a = Publisher(subject, mode, batch=batch)
        b = Publisher(reference, mode, batch=batch)
        for p in (a, b):
            p.seconds = seconds or p.seconds
            p.connections = connections or p.connections
        a(1)  # warm-up runs, counted for the final check but not measured
        b(1)
        subjects, references, ratios = pair_ratios(mode.pairs, a, b)
        for server, publisher in ((subject, a), (reference, b)):
            if server in spools:
                # A durable backend commits each transition: give it time in proportion.
                timeout = 120 + publisher.accepted / 100
                doc = drain_and_check(server.url, "bench", publisher.accepted, timeout)
                result.checks.append(
                    f"{server.name}: {doc['counts']['succeeded']} published messages all "
                    "succeeded; no 5xx, no non-202"
                )
    return summarise(result, subjects, references, ratios, at_least=target, unit="msgs/s")


def warm(server: Server) -> None:
    wrk(server.url + "/healthz", seconds=1, connections=4).check("warm-up")


def b1(mode: Mode) -> Result:
    result = Result(
        "B1",
        "publish",
        "single-message POST req/s, Spool ÷ raw ASGI app on the same Hypercorn",
    )
    with workdir() as tmp:
        spool = spool_server(tmp, "spool", PUBLISH_QUEUE, RETENTION)
        raw = module_server(tmp, "raw", "tests.bench.rawapp")
        return _publish_pair(result, mode, spool, raw, batch=False, target=0.75)


def b2(mode: Mode) -> Result:
    result = Result(
        "B2",
        "batch ingest",
        "messages/s through /batch (1,000 a request), Spool ÷ raw ASGI app on the same Hypercorn",
    )
    with workdir() as tmp:
        spool = spool_server(tmp, "spool", PUBLISH_QUEUE, RETENTION)
        raw = module_server(tmp, "raw", "tests.bench.rawapp")
        return _publish_pair(result, mode, spool, raw, batch=True, target=0.5)


def b7(mode: Mode) -> Result:
    result = Result(
        "B7", "durable", "sqlite publish req/s ÷ memory publish req/s (32 connections), and batches"
    )
    with workdir() as tmp:
        durable = _with_backend(tmp, "sqlite")
        memory = spool_server(tmp, "spool-memory", DURABLE_QUEUE, RETENTION)
        try:
            durable.start()
        except RuntimeError as exc:
            result.note = "n/a (sqlite backend not available)"
            result.figures["start_error"] = str(exc)[-300:]
            return result
        durable.stop()
        # Short runs: afterwards every message is handled, two commits each on sqlite.
        single = _publish_pair(
            result, mode, durable, memory, batch=False, target=0.85, seconds=mode.seconds(2, 1)
        )
        if mode.quick:
            return single  # the smoke test leaves batches out: their drain is long on sqlite
        batches = Result("B7b", "durable batches", "sqlite ÷ memory, messages/s through /batch")
        durable, memory = (
            _with_backend(tmp, "sqlite", "2"),
            spool_server(tmp, "spool-memory2", DURABLE_QUEUE, RETENTION),
        )
        single.extra.append(
            _publish_pair(
                batches, mode, durable, memory, batch=True, target=0.5, seconds=1, connections=1
            )
        )
        return single


# Many consumers, so the sqlite journal can group their commits while the drain runs.
DURABLE_QUEUE = PUBLISH_QUEUE.replace("concurrency = 4", "concurrency = 32")


def _with_backend(tmp: Path, backend: str, suffix: str = "") -> Server:
    server = spool_server(tmp, f"spool-{backend}{suffix}", DURABLE_QUEUE, RETENTION)
    config = Path(server.argv[-1])
    config.write_text(
        config.read_text().replace("[broker]\n", f'[broker]\nbackend = "{backend}"\n', 1)
    )
    return server


def b9(mode: Mode) -> Result:
    result = Result(
        "B9", "metrics cost", "publish req/s while /metrics is scraped at 10 Hz ÷ unscraped"
    )
    with workdir() as tmp:
        spool = spool_server(tmp, "spool", PUBLISH_QUEUE, RETENTION)
        with serving(spool):
            admin(spool.url, "/v1/queues/bench/pause")
            plain = Publisher(spool, mode)
            plain(1)
            scrapes: list[int] = []

            def scraped() -> float:
                stop = threading.Event()
                thread = threading.Thread(target=_scrape, args=(spool.url, stop, scrapes))
                thread.start()
                try:
                    return plain()
                finally:
                    stop.set()
                    thread.join(10)

            subjects, references, ratios = pair_ratios(mode.pairs, scraped, plain)
            doc = drain_and_check(spool.url, "bench", plain.accepted)
            if not scrapes or any(code != 200 for code in scrapes):
                raise BenchFailure(f"scrapes of /metrics failed: {set(scrapes)}")
            result.checks.append(
                f"{doc['counts']['succeeded']} messages all succeeded; {len(scrapes)} scrapes, all 200"
            )
            result.figures["scrapes"] = len(scrapes)
    return summarise(result, subjects, references, ratios, at_least=0.95, unit="req/s")


def _scrape(url: str, stop: threading.Event, codes: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.wait(0.1):
            codes.append(client.get(url + "/metrics").status_code)


# --------------------------------------------------------------------------- B5
LOADED_QUEUES = """
[executor]
threads = 4
processes = 2
switch_interval_ms = {switch}

[queues.proc]
handler = "service.handlers:checksum"
mode = "process"
concurrency = 2

[queues.thread]
handler = "service.handlers:checksum"
mode = "thread"
concurrency = 4

[queues.loop]
handler = "tests.bench.work:on_loop_cpu"
mode = "async"
concurrency = 1
"""
CPU_JOB_S = 0.05  # CPU_ROUNDS of checksum


def b5(mode: Mode) -> Result:
    result = Result(
        "B5",
        "loop under CPU load",
        "/healthz p99 while CPU-bound handlers saturate every worker ÷ idle p99",
    )
    seconds = mode.seconds(2, 1)
    with workdir() as tmp:
        # Not pinned: the process pool needs both CPUs, and the loop must win them back.
        # BENCH_SWITCH_MS tries another executor.switch_interval_ms (the default is 1 ms).
        switch = os.environ.get("BENCH_SWITCH_MS", "1.0")
        spool = spool_server(tmp, "spool", LOADED_QUEUES.format(switch=switch), cpu=None)
        with serving(spool):
            warm(spool)
            # (queue, consumers, CPUs its handlers can use at once, target)
            for queue, workers, cores, at_most in (
                ("proc", 2, 2, 3.0),
                ("thread", 4, 1, 10.0),  # one GIL: one CPU's worth, whatever the threads
                ("loop", 1, 1, 0.0),
            ):
                sub = Result(f"B5-{queue}", f"{queue} mode", f"p99 loaded ÷ idle, mode {queue}")
                published = 0

                def loaded(q: str = queue, w: int = workers, c: int = cores) -> float:
                    nonlocal published
                    published += _saturate(spool.url, q, w, c, seconds)
                    return _healthz_p99(spool, seconds)

                def idle(q: str = queue) -> float:
                    _wait_idle(spool.url, q)
                    return _healthz_p99(spool, seconds)

                subjects, references, ratios = pair_ratios(mode.pairs, loaded, idle)
                doc = drain_and_check(spool.url, queue, published, timeout=180)
                sub.checks.append(f"{doc['counts']['succeeded']} CPU-bound jobs all succeeded")
                if at_most:
                    summarise(sub, subjects, references, ratios, at_most=at_most, unit="ms")
                else:
                    summarise(sub, subjects, references, ratios, unit="ms")
                    sub.target, sub.note = "negative control", "a handler run on the loop"
                result.extra.append(sub)
    first = result.extra[0]
    result.ratio, result.spread, result.target, result.met = (
        first.ratio,
        first.spread,
        first.target,
        all(s.met for s in result.extra if s.met is not None),
    )
    return result


def _saturate(url: str, queue: str, workers: int, cores: int, seconds: float) -> int:
    """Enough ~50 ms jobs to keep every worker busy for the whole measurement, and a little."""
    count = int(cores * (seconds + 0.5) / CPU_JOB_S) + workers
    body = {"messages": [{"body": {"data": f"job{i}", "rounds": CPU_ROUNDS}} for i in range(count)]}
    response = httpx.post(f"{url}/v1/queues/{queue}/messages/batch", json=body, timeout=30)
    if response.status_code != 202:
        raise BenchFailure(f"saturating {queue}: {response.status_code} {response.text[:200]}")
    time.sleep(0.3)  # let every worker pick up its first job
    return count


def _wait_idle(url: str, queue: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        depth = httpx.get(f"{url}/v1/queues/{queue}", timeout=30).json()["depth"]
        if depth["queued"] + depth["running"] == 0:
            time.sleep(0.3)
            return
        time.sleep(0.2)
    raise BenchFailure(f"{queue} still busy after {timeout:g} s")


def _healthz_p99(server: Server, seconds: float) -> float:
    load = wrk(server.url + "/healthz", seconds=seconds, connections=1, cpu=None)
    load.check("/healthz", expect=200)
    return load.p99_ms
