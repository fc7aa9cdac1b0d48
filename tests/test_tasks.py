"""TaskOwner (service/tasks.py): every task it spawns is kept until it ends, a failure nobody
else sees is logged, and close() waits with a bound, then cancels. And the grace table
(service/grace.py) keeps SPEC's bound on a stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service import grace
from service.tasks import TaskOwner

from .waits import until


async def test_a_spawned_task_is_kept_until_it_ends() -> None:
    owner, release = TaskOwner(), asyncio.Event()
    task = owner.spawn(release.wait(), name="waiting")
    assert len(owner) == 1
    release.set()
    await task
    await until(lambda: len(owner) == 0, "the ended task let go")


async def test_a_spawned_task_that_fails_is_logged_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = TaskOwner()

    async def broken() -> None:
        raise RuntimeError("the commit broke")

    task = owner.spawn(broken(), name="commit")
    await asyncio.wait({task})
    await until(lambda: len(owner) == 0, "the failed task let go")
    failures = [r for r in caplog.records if r.name == "service.tasks"]
    assert [r.getMessage() for r in failures] == ["background task commit failed"]
    assert failures[0].exc_info is not None and "the commit broke" in str(failures[0].exc_info[1])


async def test_a_shielded_task_outlives_its_cancelled_caller_and_close_awaits_it() -> None:
    owner, commit = TaskOwner(), asyncio.Event()
    steps: list[str] = []

    async def write() -> None:
        steps.append("begun")
        await commit.wait()
        steps.append("committed")

    caller = asyncio.create_task(owner.shield(write()))
    await until(lambda: steps == ["begun"], "the write begun")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(owner) == 1  # the rest of the write is the owner's now
    closing = asyncio.create_task(owner.close(30, 1))
    await until(lambda: len(owner) == 1 and not closing.done(), "close waiting")
    commit.set()
    await closing
    assert steps == ["begun", "committed"] and len(owner) == 0


async def test_a_shielded_failure_whose_caller_went_away_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner, fail = TaskOwner(), asyncio.Event()

    async def write() -> None:
        await fail.wait()
        raise OSError("disk full")

    caller = asyncio.create_task(owner.shield(write(), name="outcome"))
    await until(lambda: len(owner) == 1, "the write suspended")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    fail.set()
    await until(lambda: len(owner) == 0, "the write ended")
    await until(lambda: any(r.name == "service.tasks" for r in caplog.records), "logged")
    assert [r.getMessage() for r in caplog.records if r.name == "service.tasks"] == [
        "background task outcome failed"
    ]


async def test_a_shielded_failure_goes_to_its_caller_and_is_not_logged_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = TaskOwner()

    async def write() -> None:
        await asyncio.sleep(0)  # suspends once: the rest runs in the owner's task
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await owner.shield(write())
    assert not [r for r in caplog.records if r.name == "service.tasks"]


async def test_close_cancels_what_outlasts_its_grace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "service.tasks")
    owner, never = TaskOwner(), asyncio.Event()
    task = owner.spawn(never.wait(), name="stuck")
    await owner.close(0.05, 5)
    assert task.cancelled() and len(owner) == 0
    assert "cancelling them (stuck)" in caplog.text


async def test_close_also_waits_for_tasks_spawned_while_it_waits() -> None:
    owner, first, second = TaskOwner(), asyncio.Event(), asyncio.Event()
    later: list[asyncio.Task[bool]] = []

    async def hands_on() -> None:
        await first.wait()
        later.append(owner.spawn(second.wait(), name="later"))

    owner.spawn(hands_on())
    closing = asyncio.create_task(owner.close(30, 1))
    first.set()
    await until(lambda: bool(later), "the second task spawned")
    assert not closing.done()
    second.set()
    await closing
    assert later[0].done() and not later[0].cancelled()


def test_every_wait_of_a_stop_adds_up_within_spec_bound() -> None:
    """SPEC: a stop ends within graceful_timeout_s + 5 s, whatever handlers and clients do.
    The waits leave room for the work that is not a wait (the broker's last write)."""
    for graceful_s in (0.0, 8.0, 3600.0):
        assert grace.stop_bound_s(graceful_s) <= graceful_s + grace.STOP_MARGIN_S - 0.25
    assert grace.STOP_MARGIN_S == 5.0
    # Every grace of a stop is in the sum, once per wait it bounds.
    assert grace.STOP_WAITS_S.count(grace.SETTLE_S) == 2
    for wait in (
        grace.CANCEL_GRACE_S,
        grace.POOL_CLOSE_TIMEOUT_S,
        grace.AMQP_CLOSE_S,
        grace.CONNECTION_GRACE_S,
        grace.ABORTED_GRACE_S,
        grace.STRAY_TASK_GRACE_S,
    ):
        assert wait in grace.STOP_WAITS_S
