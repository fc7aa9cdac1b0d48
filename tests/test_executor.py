"""Handlers in every mode: timeouts free the slot, crashes rebuild the worker."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from service import Settings

from .conftest import client_for
from .contract.helpers import figures, publish, wait_final


async def test_async_handler_timeout_is_cancelled(tmp_settings: Callable[..., Settings]) -> None:
    settings = tmp_settings(
        {
            "q": {
                "handler": "tests.handlers:async_sleep",
                "mode": "async",
                "timeout_s": 0.2,
                "max_retries": 0,
            }
        }
    )
    async with client_for(settings) as (client, runtime):
        msg = await publish(client, "q", {"seconds": 30})
        done = await wait_final(client, msg["id"])
        assert done["status"] == "failed"
        assert done["error"]["type"] == "Timeout"
        assert runtime.metrics.timeouts.labels("q").value == 1


async def test_stubborn_async_handler_does_not_hold_its_consumer(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {
            "q": {
                "handler": "tests.handlers:stubborn",
                "mode": "async",
                "timeout_s": 0.2,
                "max_retries": 0,
                "concurrency": 1,
            }
        }
    )
    async with client_for(settings) as (client, _):
        first = await publish(client, "q", {"seconds": 5})
        second = await publish(client, "q", {"seconds": 0})
        assert (await wait_final(client, first["id"]))["error"]["type"] == "Timeout"
        assert (await wait_final(client, second["id"]))["status"] == "succeeded"


async def test_process_timeout_kills_the_worker_and_frees_the_slot(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {
            "cpu": {
                "handler": "tests.handlers:spin",
                "mode": "process",
                "timeout_s": 0.5,
                "max_retries": 0,
                "concurrency": 1,
            }
        },
        executor={"processes": 1},
    )
    async with client_for(settings) as (client, runtime):
        stuck = await publish(client, "cpu", {"seconds": 60})
        quick = await publish(client, "cpu", {"seconds": 0.01})
        assert (await wait_final(client, stuck["id"]))["error"]["type"] == "Timeout"
        started = time.monotonic()
        done = await wait_final(client, quick["id"])
        assert done["status"] == "succeeded"
        assert time.monotonic() - started < 20  # the next message ran, not after 60 s
        assert runtime.executors.process_restarts == 1


async def test_crashing_worker_fails_the_attempt_and_the_pool_recovers(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {
            "crash": {
                "handler": "tests.handlers:crash",
                "mode": "process",
                "max_retries": 1,
                "retry_backoff_s": 0.01,
                "retry_backoff_max_s": 0.01,
            },
            "cpu": {"handler": "tests.handlers:spin", "mode": "process"},
            "other": {"handler": "tests.handlers:echo"},
        },
        executor={"processes": 1},
    )
    async with client_for(settings) as (client, _):
        boom = await publish(client, "crash", None)
        other = await publish(client, "other", "still fine")
        done = await wait_final(client, boom["id"])
        assert done["status"] == "failed"
        assert done["attempts"] == 2  # it was retried as usual
        assert done["error"]["type"] == "WorkerCrashed"
        assert (await wait_final(client, other["id"]))["status"] == "succeeded"
        after = await publish(client, "cpu", {"seconds": 0.01})
        assert (await wait_final(client, after["id"]))["status"] == "succeeded"


async def test_process_handler_errors_come_back_typed(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:fail", "mode": "process", "max_retries": 0}}
    )
    async with client_for(settings) as (client, _):
        msg = await publish(client, "q", "x")
        done = await wait_final(client, msg["id"])
        assert done["error"] == {"type": "ValueError", "message": "cannot handle 'x'"}


async def test_thread_overrun_is_abandoned_counted_and_the_pool_is_replaced(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {
            "q": {
                "handler": "tests.handlers:sleep",
                "timeout_s": 0.2,
                "max_retries": 0,
                "concurrency": 2,
            }
        },
        executor={"threads": 2},
    )
    async with client_for(settings) as (client, runtime):
        stuck = [await publish(client, "q", {"seconds": 2}) for _ in range(2)]
        for msg in stuck:
            assert (await wait_final(client, msg["id"]))["error"]["type"] == "Timeout"
        assert runtime.executors.abandoned_threads == 2
        # Both threads of the first pool are stuck, yet a fresh pool runs the next message.
        quick = await publish(client, "q", {"seconds": 0})
        assert (await wait_final(client, quick["id"]))["status"] == "succeeded"
        body = await (await client.get("/metrics")).get_data(as_text=True)
        assert "spool_executor_abandoned_threads 2.0" in body
        assert (await figures(client, "q"))["counts"]["failed"] == 2


async def test_process_workers_run_below_the_loop(tmp_settings: Callable[..., Settings]) -> None:
    """CPU-bound handlers must never keep the loop from the CPU: their workers run at a
    lower priority than the server, and on Linux in the idle policy, which any woken task
    preempts (B5 in the benchmarks)."""
    settings = tmp_settings({"q": {"handler": "tests.handlers:scheduling", "mode": "process"}})
    async with client_for(settings) as (client, _):
        msg = await publish(client, "q", None)
        done = await wait_final(client, msg["id"])
        assert done["status"] == "succeeded"
        assert done["result"]["nice"] >= max(os.getpriority(os.PRIO_PROCESS, 0), 10)
        if sys.platform == "linux":
            assert done["result"]["policy"] == os.SCHED_IDLE
            assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the server keeps its own
