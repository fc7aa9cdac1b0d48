"""In-process workloads, run in a child process (`python -m tests.bench.engine CASE`) so each
benchmark starts from a fresh interpreter, pinned like the servers. Prints one JSON line.

Each workload publishes `n` messages and returns messages/s from the first publish to the
last handler's end, after checking that every message was handled exactly as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from service.config import LogSettings, settings_from_dict
from service.logs import setup_logging
from service.model import Envelope
from service.runtime import Runtime

from ..conftest import running
from . import peers
from .work import CPU_ROUNDS, small

CHUNK = 1000
# The memory backend writes what is left at a stop here; each runtime reads none back.
SNAPSHOT = os.path.join(tempfile.gettempdir(), f"spool-bench-{os.getpid()}.jsonl")
CONCURRENCY = 4  # consumers, and threads in the pool, on every side
_envelope = msgspec.json.Decoder(Envelope)


def bodies(n: int) -> list[bytes]:
    return [b'{"body":{"order":%d,"sku":"A-17","qty":2}}' % i for i in range(n)]


class BenchFailure(AssertionError):
    pass


# --------------------------------------------------------------------------- Spool's engine
def spool_settings(queues: dict[str, dict[str, Any]], threads: int = CONCURRENCY) -> Any:
    return settings_from_dict(
        {
            "executor": {"threads": threads, "processes": 2},
            "results": {"max_entries": 1_000_000},
            "broker": {"snapshot_path": SNAPSHOT},
            "server": {"graceful_timeout_s": 0},
            "queues": queues,
        }
    )


async def with_runtime(settings: Any, body: Callable[[Runtime], Awaitable[Any]]) -> Any:
    """The tests' own Runtime lifecycle (tests/conftest.py `running`), minus the snapshot."""
    try:
        async with running(settings) as runtime:
            return await body(runtime)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(SNAPSHOT)


async def publish_and_wait(rt: Runtime, queue: str, items: list[bytes]) -> float:
    """Publishes every item (as the API would: one Envelope each, in chunks) and waits until
    the queue's succeeded count has grown by len(items)."""
    counts = rt.broker.cached_stats(queue).counts
    before = counts.succeeded
    started = time.perf_counter()
    for i in range(0, len(items), CHUNK):
        await rt.broker.publish(queue, [_envelope.decode(b) for b in items[i : i + CHUNK]])
        await asyncio.sleep(0)
    # Polling a counter every 2 ms costs the loop less than an event set per message would.
    while rt.broker.cached_stats(queue).counts.succeeded - before < len(items):  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    stats = rt.broker.cached_stats(queue)
    if stats.counts.failed or stats.counts.retried or stats.depth["queued"]:
        raise BenchFailure(f"{queue}: {stats}")
    return len(items) / elapsed


async def spool_rate(n: int) -> float:
    settings = spool_settings(
        {
            "b": {
                "handler": "tests.bench.work:small",
                "mode": "thread",
                "concurrency": CONCURRENCY,
                "max_size": 10 * n,
            }
        }
    )
    items = bodies(n)
    rate: float = await with_runtime(settings, lambda rt: publish_and_wait(rt, "b", items))
    return rate


# --------------------------------------------------------------------------- the reference
async def asyncio_rate(n: int) -> float:
    """The bare pattern: asyncio.Queue, consumer tasks, run_in_executor into a thread pool."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = asyncio.Event()
    handled = 0
    results: dict[int, Any] = {}

    async def consumer() -> None:
        nonlocal handled
        while True:
            key, body = await queue.get()
            results[key] = await loop.run_in_executor(pool, small, body)
            handled += 1
            if handled == n:
                done.set()

    items = bodies(n)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        tasks = [asyncio.create_task(consumer()) for _ in range(CONCURRENCY)]
        started = time.perf_counter()
        for i in range(0, n, CHUNK):
            for key, raw in enumerate(items[i : i + CHUNK], start=i):
                queue.put_nowait((key, msgspec.json.decode(raw)["body"]))
            await asyncio.sleep(0)
        await done.wait()
        elapsed = time.perf_counter() - started
        for task in tasks:
            task.cancel()
    if len(results) != n:
        raise BenchFailure(f"asyncio pipeline handled {len(results)} of {n}")
    return n / elapsed


# --------------------------------------------------------------------------- CPU scaling (B6)
async def cpu_rates(pairs: int, jobs: int) -> dict[str, list[float]]:
    settings = spool_settings(
        {
            "proc": {"handler": "service.handlers:checksum", "mode": "process", "concurrency": 2},
            "thread": {"handler": "service.handlers:checksum", "mode": "thread", "concurrency": 2},
        },
        threads=2,
    )
    items = [b'{"body":{"data":"job%d","rounds":%d}}' % (i, CPU_ROUNDS // 5) for i in range(jobs)]

    async def run(rt: Runtime) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"subject": [], "reference": []}
        for _ in range(pairs):
            out["subject"].append(await publish_and_wait(rt, "proc", items))
            out["reference"].append(await publish_and_wait(rt, "thread", items))
        return out

    rates: dict[str, list[float]] = await with_runtime(settings, run)
    return rates


# --------------------------------------------------------------------------- rate limit (B11)
async def limit_rates(pairs: int, n: int) -> dict[str, list[float]]:
    """B3's workload on a rate-limited queue whose limit is far above what it can do (so
    only the bucket's bookkeeping is measured), against the same queue unlimited, in one
    runtime, turn about."""
    queue = {"handler": "tests.bench.work:small", "mode": "thread", "concurrency": CONCURRENCY}
    settings = spool_settings(
        {
            "limited": {**queue, "max_size": 10 * n, "rate_limit": "1000000/s"},
            "free": {**queue, "max_size": 10 * n},
        }
    )
    items = bodies(n)

    async def run(rt: Runtime) -> dict[str, list[float]]:
        await publish_and_wait(rt, "limited", items[: n // 4])  # warm both
        await publish_and_wait(rt, "free", items[: n // 4])
        out: dict[str, list[float]] = {"subject": [], "reference": []}
        # Which goes first alternates: in one runtime the first of a pair runs measurably
        # slower (an A/A run, both unlimited, showed it), which would read as overhead.
        for turn in range(pairs):
            order = ("limited", "free") if turn % 2 == 0 else ("free", "limited")
            for queue in order:
                rate = await publish_and_wait(rt, queue, items)
                out["subject" if queue == "limited" else "reference"].append(rate)
        return out

    rates: dict[str, list[float]] = await with_runtime(settings, run)
    return rates


# --------------------------------------------------------------------------- memory (B8)
def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def memory_per_message(n: int) -> dict[str, float]:
    settings = spool_settings(
        {"m": {"handler": "tests.bench.work:async_noop", "mode": "async", "max_size": n}}
    )

    async def run(rt: Runtime) -> dict[str, float]:
        await rt.broker.pause("m")
        # A first small publish settles lazily created state (code paths, caches).
        await rt.broker.publish("m", [_envelope.decode(b) for b in bodies(10)])
        gc.collect()
        before = rss_bytes()
        for i in range(0, n - 10, CHUNK):
            chunk = [b'{"body":{"i":%d}}' % k for k in range(i, min(i + CHUNK, n - 10))]
            await rt.broker.publish("m", [_envelope.decode(b) for b in chunk])
        gc.collect()
        grown = rss_bytes() - before
        queued = rt.broker.cached_stats("m").depth["queued"]
        if queued != n:
            raise BenchFailure(f"{queued} queued, expected {n}")
        await rt.broker.resume("m")
        while rt.broker.cached_stats("m").counts.succeeded < n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return {"bytes_per_message": grown / (n - 10), "queued": float(queued)}

    result: dict[str, float] = await with_runtime(settings, run)
    return result


# --------------------------------------------------------------------------- entry point
async def interleave(
    pairs: int, subject: Callable[[], Awaitable[float]], reference: Callable[[], Awaitable[float]]
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"subject": [], "reference": []}
    for _ in range(pairs):
        out["subject"].append(await subject())
        out["reference"].append(await reference())
    return out


async def main_async(case: str, pairs: int, n: int) -> Any:
    if case == "warm":
        return {}
    if case == "b3":
        await asyncio_rate(n // 4)  # warm both sides (imports, thread start, code paths)
        await spool_rate(n // 4)
        return await interleave(pairs, lambda: spool_rate(n), lambda: asyncio_rate(n))
    if case in ("taskiq", "huey"):
        peer = peers.taskiq_rate if case == "taskiq" else peers.huey_rate
        await spool_rate(n // 4)
        await peer(n // 4, CONCURRENCY)
        return await interleave(pairs, lambda: spool_rate(n), lambda: peer(n, CONCURRENCY))
    if case == "b6":
        return await cpu_rates(pairs, n)
    if case == "b8":
        return await memory_per_message(n)
    if case == "b11":
        return await limit_rates(pairs, n)
    raise SystemExit(f"unknown case {case!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    setup_logging(LogSettings())  # info, as the service logs by default (to stderr)
    out = asyncio.run(main_async(args.case, args.pairs, args.n))
    sys.stdout.write("BENCH_JSON " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
