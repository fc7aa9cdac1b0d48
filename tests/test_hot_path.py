"""The per-message shortcuts keep their guarantees: an outcome is recorded even when the
consumer is cancelled mid-write, and a thread call that timed out before it started never
runs (nor counts as an abandoned thread)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.broker.ready import ReadyLine
from service.config import ExecutorSettings
from service.executor import Executors, HandlerTimeout
from service.handlers.registry import resolve
from service.metrics import LightHistogram, Metrics
from service.model import HandlerContext
from service.tasks import TaskOwner
from service.timestamps import _rfc3339, _slow_rfc3339

from .waits import gate_body, until


def block_loop_until(path: Path, timeout: float = 10) -> None:
    """Blocks the calling thread (the event loop, on purpose) until `path` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


async def test_shielded_returns_at_once_without_a_task() -> None:
    async def immediate() -> int:
        return 7

    before = len(asyncio.all_tasks())
    assert await TaskOwner().shield(immediate()) == 7
    assert len(asyncio.all_tasks()) == before


async def test_shielded_finishes_a_suspended_write_even_when_the_caller_is_cancelled() -> None:
    steps: list[str] = []
    commit, committed = asyncio.Event(), asyncio.Event()

    async def write() -> str:
        steps.append("start")
        await commit.wait()  # suspended, like a journal write waiting for its COMMIT
        steps.append("committed")
        committed.set()
        return "done"

    caller = asyncio.create_task(TaskOwner().shield(write()))
    await until(lambda: bool(steps))  # the write has begun and is suspended
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert steps == ["start"]  # cancelled while the write was suspended
    commit.set()
    await asyncio.wait_for(committed.wait(), 10)
    assert steps == ["start", "committed"]


async def test_shielded_passes_results_and_errors_through_a_suspension() -> None:
    async def slow(fail: bool) -> str:
        await asyncio.sleep(0.01)
        if fail:
            raise ValueError("journal refused")
        return "ok"

    owner = TaskOwner()
    assert await owner.shield(slow(False)) == "ok"
    with pytest.raises(ValueError, match="journal refused"):
        await owner.shield(slow(True))


async def test_a_thread_call_that_times_out_before_it_starts_never_runs(tmp_path: Path) -> None:
    executors = Executors(ExecutorSettings(threads=1))
    gate = resolve("tests.handlers:gate")
    recorder = resolve("tests.handlers:record")
    out = tmp_path / "ran.txt"

    def ctx(mid: str) -> HandlerContext:
        return HandlerContext(id=mid, queue="q", attempt=1, headers={}, options={"path": str(out)})

    body = msgspec.json.encode(gate_body(tmp_path, "release"))
    try:
        busy = asyncio.create_task(executors.run("thread", gate, body, ctx("a"), 30))
        await until((tmp_path / "release.started").exists)  # the only thread is now busy
        with pytest.raises(HandlerTimeout):
            await executors.run("thread", recorder, b"{}", ctx("b"), 0.1)
        (tmp_path / "release").touch()
        assert await busy == b'"released"'
        # The one thread takes calls in order: once a later one has run, it has passed over
        # the timed-out call.
        assert await executors.run("thread", resolve("tests.handlers:echo"), b"1", ctx("c"), 30)
        assert not out.exists()  # the timed-out call never ran
        assert executors.abandoned_threads == 0
    finally:
        (tmp_path / "release").touch()
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


async def test_readiness_fails_once_four_times_the_pool_is_stuck_and_recovers(
    tmp_path: Path,
) -> None:
    executors = Executors(ExecutorSettings(threads=1))
    gate = resolve("tests.handlers:gate")
    ctx = HandlerContext(id="m", queue="q", attempt=1, headers={}, options={})
    body = msgspec.json.encode(gate_body(tmp_path, "release"))
    try:
        for stuck in range(1, 5):
            assert executors.health()["ok"] is True
            (tmp_path / "release.started").unlink(missing_ok=True)
            run = asyncio.create_task(executors.run("thread", gate, body, ctx, 0.05))
            await asyncio.sleep(0)  # its first step submits the call and arms the timeout
            # The timeout is a timer of this loop: held here until the handler runs, the
            # timer can only fire on a running handler, however slow the thread is to start.
            block_loop_until(tmp_path / "release.started")
            with pytest.raises(HandlerTimeout):
                await run
            assert executors.abandoned_threads == stuck  # each replaced, so the next ran
        assert executors.health()["ok"] is False
        (tmp_path / "release").touch()  # the stuck handlers return: nothing leaks any more
        await until(lambda: executors.abandoned_threads == 0)
        assert executors.health()["ok"] is True
    finally:
        (tmp_path / "release").touch()
        executors.shutdown()


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=4e9, allow_nan=False),
        # Half-millisecond and last-microsecond edges, where the rounding decides the digits.
        st.integers(min_value=0, max_value=4 * 10**9).map(lambda s: s + 0.9999995),
        st.integers(min_value=0, max_value=4 * 10**12).map(lambda ms: ms / 1000 + 0.0005),
    )
)
def test_the_quick_timestamp_writes_what_datetime_writes(ts: float) -> None:
    assert _rfc3339(ts) == _slow_rfc3339(ts)


async def test_the_ready_line_keeps_priority_then_arrival_order_and_fronts() -> None:
    line = ReadyLine()
    line.push_many(["a", "b"], 0)
    line.push("c", 5)
    line.push("d", 0)
    line.push_front("e", 0)  # an attempt given back runs before what waited behind it
    line.push_many(["f", "g"], 9)
    taken = [line.pop()[0] for _ in range(len(line))]
    assert taken == ["f", "g", "c", "e", "a", "b", "d"]
    with pytest.raises(IndexError):
        line.pop()


async def test_the_ready_line_wakes_one_getter_per_id_and_survives_a_cancelled_getter() -> None:
    line = ReadyLine()
    getters = [asyncio.create_task(line.get()) for _ in range(3)]
    await asyncio.sleep(0)
    getters[0].cancel()  # gone before anything arrives: its wake-up must pass on
    line.push_many(["x", "y"], 3)
    done, pending = await asyncio.wait(getters[1:], timeout=1)
    assert sorted(t.result() for t in done) == [("x", 3), ("y", 3)] and not pending
    late = asyncio.create_task(line.get())
    await asyncio.sleep(0)
    assert not late.done()  # nothing left: it waits
    line.push("z", 0)
    assert await asyncio.wait_for(late, 1) == ("z", 0)
