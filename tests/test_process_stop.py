"""A stop that interrupts process handlers closes their pools inside the stop's bound: no
semaphore is left for multiprocessing's resource tracker to report leaked at exit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures.process import _ExecutorManagerThread
from functools import partial
from pathlib import Path

import httpx
import msgspec
import pytest

from service.config import ExecutorSettings
from service.executor import Executors
from service.handlers.registry import resolve
from service.model import HandlerContext

from .conftest import Server, toml_config
from .waits import gate_body, started_ids, until, wait_until

# Lines only multiprocessing or an uncaught exception writes: none may reach stderr at a stop.
FOREIGN_LINES = ("resource_tracker", "Traceback", "leaked", "Exception ignored", "sem_unlink")
SLOTS = 4
ROUNDS = 3


def manager_threads() -> set[threading.Thread]:
    """The threads concurrent.futures runs per process pool; each holds its pool's queues
    (and so their semaphores) until it ends."""
    return {t for t in threading.enumerate() if isinstance(t, _ExecutorManagerThread)}


def has_started(started: Path, attempts: int) -> bool:
    return len(started_ids(started)) == attempts


async def test_shutdown_returns_only_once_every_interrupted_pool_is_closed(
    tmp_path: Path,
) -> None:
    before = manager_threads()
    executors = Executors(ExecutorSettings(processes=SLOTS))
    await asyncio.gather(*map(asyncio.wrap_future, executors.warm_up()))
    handler = resolve("tests.handlers:gate")
    body = gate_body(tmp_path, "never")
    tasks = [
        asyncio.create_task(
            executors.run(
                "process",
                handler,
                msgspec.json.encode(body),
                HandlerContext(id=f"m{i}", queue="q", attempt=1, headers={}, options={}),
                120,
            )
        )
        for i in range(SLOTS)
    ]
    started = Path(body["started"])
    await until(partial(has_started, started, SLOTS), "every handler started", 60)
    for task in tasks:
        task.cancel()  # what a graceful stop's deadline does to its consumers
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    # Given the time (a loaded machine may need more than the stop's 0.5 s grace, which
    # test_tasks.py holds in the stop's sum), shutdown returns once every pool is closed.
    executors.shutdown(bound_s=60)
    assert manager_threads() - before == set()


@pytest.mark.slow
def test_a_stop_that_interrupts_process_handlers_writes_only_spools_lines(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """Whether the tracker saw a pool still closing was a race, so the stop is repeated."""
    queues = f"""
[executor]
processes = {SLOTS}
[queues.p]
handler = "tests.handlers:gate"
mode = "process"
concurrency = {SLOTS}
timeout_s = 120
"""
    config = toml_config(tmp_path, queues, "[server]\ngraceful_timeout_s = 0.2\n")
    body = gate_body(tmp_path, "never")
    started = Path(body["started"])
    port = None
    for round_ in range(1, ROUNDS + 1):
        server = server_factory(config, port=port)
        port = server.port
        server.start()
        if round_ == 1:  # later rounds run the same messages again, given back at each stop
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for _ in range(SLOTS):
                    assert client.post("/v1/queues/p/messages", json={"body": body}).is_success
        wait_until(
            partial(has_started, started, SLOTS * round_),
            "every handler started",
            60,
        )
        assert server.stop() == 0, server.log()
        foreign = [
            line for line in server.log().splitlines() if any(s in line for s in FOREIGN_LINES)
        ]
        assert foreign == [], f"round {round_}:\n{server.log()}"
