"""The per-message shortcuts keep their guarantees: an outcome is recorded even when the
consumer is cancelled mid-write, and a thread call that timed out before it started never
runs (nor counts as an abandoned thread)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.config import ExecutorSettings
from service.consumer import shielded
from service.executor import Executors, HandlerTimeout
from service.handlers.registry import resolve
from service.metrics import LightHistogram, Metrics
from service.model import HandlerContext


async def test_shielded_returns_at_once_without_a_task() -> None:
    async def immediate() -> int:
        return 7

    before = len(asyncio.all_tasks())
    assert await shielded(immediate()) == 7
    assert len(asyncio.all_tasks()) == before


async def test_shielded_finishes_a_suspended_write_even_when_the_caller_is_cancelled() -> None:
    steps: list[str] = []

    async def write() -> str:
        steps.append("start")
        await asyncio.sleep(0.05)
        steps.append("committed")
        return "done"

    caller = asyncio.create_task(shielded(write()))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0.1)
    assert steps == ["start", "committed"]


async def test_shielded_passes_results_and_errors_through_a_suspension() -> None:
    async def slow(fail: bool) -> str:
        await asyncio.sleep(0.01)
        if fail:
            raise ValueError("journal refused")
        return "ok"

    assert await shielded(slow(False)) == "ok"
    with pytest.raises(ValueError, match="journal refused"):
        await shielded(slow(True))


async def test_a_thread_call_that_times_out_before_it_starts_never_runs(tmp_path: Path) -> None:
    executors = Executors(ExecutorSettings(threads=1))
    sleeper = resolve("tests.handlers:sleep")
    recorder = resolve("tests.handlers:record")
    out = tmp_path / "ran.txt"

    def ctx(mid: str) -> HandlerContext:
        return HandlerContext(id=mid, queue="q", attempt=1, headers={}, options={"path": str(out)})

    try:
        busy = asyncio.create_task(
            executors.run("thread", sleeper, b'{"seconds": 0.4}', ctx("a"), 5.0)
        )
        await asyncio.sleep(0.05)  # the only thread is now busy
        with pytest.raises(HandlerTimeout):
            await executors.run("thread", recorder, b"{}", ctx("b"), 0.1)
        assert await busy == b'"slept"'
        await asyncio.sleep(0.2)
        assert not out.exists()  # the timed-out call never ran
        assert executors.abandoned_threads == 0
    finally:
        executors.shutdown()


def test_light_histograms_and_counters_expose_like_prometheus_client() -> None:
    metrics = Metrics(["q"])
    wait = metrics.queues["q"].wait
    assert isinstance(wait, LightHistogram)
    for value in (0.0005, 0.001, 0.002, 400.0):
        wait.observe(value)
    metrics.queues["q"].processed["succeeded"].inc()
    text = metrics.render().decode()
    assert 'spool_queue_wait_seconds_bucket{le="0.001",queue="q"} 2.0' in text  # le: <=
    assert 'spool_queue_wait_seconds_bucket{le="0.005",queue="q"} 3.0' in text
    assert 'spool_queue_wait_seconds_bucket{le="300.0",queue="q"} 3.0' in text
    assert 'spool_queue_wait_seconds_bucket{le="+Inf",queue="q"} 4.0' in text
    assert 'spool_queue_wait_seconds_count{queue="q"} 4.0' in text
    assert 'spool_queue_wait_seconds_sum{queue="q"} 400.0035' in text
    assert 'spool_messages_processed_total{outcome="succeeded",queue="q"} 1.0' in text
    assert "# TYPE spool_messages_processed_total counter" in text
    assert "# TYPE spool_processing_seconds histogram" in text


async def test_readiness_fails_once_four_times_the_pool_is_stuck_and_recovers() -> None:
    executors = Executors(ExecutorSettings(threads=1))
    sleeper = resolve("tests.handlers:sleep")
    ctx = HandlerContext(id="m", queue="q", attempt=1, headers={}, options={})
    try:
        for stuck in range(1, 5):
            assert executors.health()["ok"] is True
            with pytest.raises(HandlerTimeout):
                await executors.run("thread", sleeper, b'{"seconds": 0.6}', ctx, 0.05)
            assert executors.abandoned_threads == stuck  # each replaced, so the next ran
        assert executors.health()["ok"] is False
        for _ in range(100):  # the stuck handlers return: nothing is leaking any more
            if executors.abandoned_threads == 0:
                break
            await asyncio.sleep(0.02)
        assert executors.health()["ok"] is True
    finally:
        executors.shutdown()
