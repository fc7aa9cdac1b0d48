"""What users would pick instead, on B3's workload: taskiq's InMemoryBroker and Huey's
MemoryHuey, each with the same number of worker threads, each at its fastest settings."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

from .work import small


class Tally:
    """Counts handled messages across threads (next() on itertools.count is atomic)."""

    def __init__(self) -> None:
        self._count = itertools.count(1)
        self.value = 0

    def add(self) -> None:
        self.value = next(self._count)


def _bodies(n: int) -> list[dict[str, Any]]:
    return [{"order": i, "sku": "A-17", "qty": 2} for i in range(n)]


async def taskiq_rate(n: int, threads: int) -> float:
    from taskiq import InMemoryBroker

    broker = InMemoryBroker(sync_tasks_pool_size=threads)
    tally = Tally()

    def handle(body: dict[str, Any]) -> int:
        result = small(body)
        tally.add()
        return result

    task = broker.task(task_name="bench.small")(handle)
    await broker.startup()
    try:
        started = time.perf_counter()
        for body in _bodies(n):
            await task.kiq(body)
        await broker.wait_all()
        while tally.value < n:  # noqa: ASYNC110 - the tally is bumped from threads
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
    finally:
        await broker.shutdown()
        broker.executor.shutdown(wait=True)
    if tally.value != n:
        raise AssertionError(f"taskiq handled {tally.value} of {n}")
    return n / elapsed


async def huey_rate(n: int, threads: int) -> float:
    return await asyncio.to_thread(_huey_rate, n, threads)


def _huey_rate(n: int, threads: int) -> float:
    from huey import MemoryHuey

    huey = MemoryHuey("bench", results=True)
    tally = Tally()
    lock = threading.Lock()

    @huey.task()  # type: ignore[untyped-decorator]
    def handle(body: dict[str, Any]) -> int:
        result = small(body)
        with lock:
            tally.add()
        return result

    consumer = huey.create_consumer(
        workers=threads,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,  # poll the queue as eagerly as Huey allows
        backoff=1.0,
        max_delay=0.001,
        check_worker_health=False,
    )
    # start() would set signal handlers, which only the main thread may: start the workers
    # the way it does, without them.
    consumer.scheduler.start()
    for _, worker in consumer.worker_threads:
        worker.start()
    try:
        started = time.perf_counter()
        for body in _bodies(n):
            handle(body)
        deadline = time.monotonic() + 300
        while tally.value < n and time.monotonic() < deadline:
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
    finally:
        consumer.stop(graceful=True)
    if tally.value != n:
        raise AssertionError(f"huey handled {tally.value} of {n}")
    return n / elapsed
