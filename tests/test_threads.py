"""HandlerThreads: every call's outcome reaches its own future, overruns get their thread
replaced, and nothing a handler raises escapes as anything but a failure."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from service.config import Settings
from service.threads import HandlerExit, HandlerThreads

from .conftest import client_for
from .contract.helpers import publish, wait_final
from .waits import until


async def test_each_result_and_error_reaches_its_own_caller() -> None:
    threads = HandlerThreads(3)

    def work(i: int) -> int:
        if i % 7 == 0:
            raise ValueError(f"no {i}")
        return i * i

    try:
        jobs = [threads.submit(partial(work, i)) for i in range(500)]
        outcomes = await asyncio.gather(*(job.future for job in jobs), return_exceptions=True)
        for i, outcome in enumerate(outcomes):
            if i % 7 == 0:
                assert isinstance(outcome, ValueError) and str(outcome) == f"no {i}"
            else:
                assert outcome == i * i
    finally:
        threads.close()


def blocker() -> tuple[threading.Event, threading.Event, Callable[[], bool]]:
    """A call that holds its thread until released: (started, release, the call)."""
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(30)

    return started, release, hold


async def test_an_overrun_gets_its_thread_replaced_and_counted_until_it_returns() -> None:
    threads = HandlerThreads(1)
    started, release, hold = blocker()
    try:
        stuck = threads.submit(hold)
        await until(started.is_set)  # the only thread is now inside hold()
        assert threads.abandon(stuck) is True
        assert threads.abandoned == 1
        # The pool still has a thread taking work.
        assert await asyncio.wait_for(threads.submit(lambda: "next").future, 10) == "next"
        release.set()
        await until(lambda: threads.abandoned == 0)
    finally:
        release.set()
        threads.close()


async def test_a_call_abandoned_before_it_starts_never_runs() -> None:
    threads = HandlerThreads(1)
    started, gate, hold = blocker()
    ran: list[str] = []
    try:
        busy = threads.submit(hold)
        queued = threads.submit(lambda: ran.append("queued"))
        await until(started.is_set)  # the only thread is busy: `queued` waits behind it
        assert threads.abandon(queued) is False  # not running: nothing to count
        gate.set()
        await busy.future
        await asyncio.wait_for(threads.submit(lambda: None).future, 10)
        assert ran == []
        assert threads.abandoned == 0
    finally:
        gate.set()
        threads.close()


def interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("raise_it", [lambda: sys.exit(3), interrupt])
async def test_exits_in_a_handler_are_failures_not_exits(raise_it: Callable[[], Any]) -> None:
    threads = HandlerThreads(1)
    try:
        with pytest.raises(HandlerExit):
            await threads.submit(raise_it).future
        assert await threads.submit(lambda: "alive").future == "alive"
    finally:
        threads.close()


async def test_close_cancels_what_has_not_started() -> None:
    threads = HandlerThreads(1)
    started, gate, hold = blocker()
    busy = threads.submit(hold)
    queued = threads.submit(lambda: "never")
    await until(started.is_set)  # `busy` runs, `queued` has not started
    threads.close()
    assert queued.future.cancelled()
    gate.set()
    assert await busy.future is True  # the running one finishes and is delivered
    with pytest.raises(RuntimeError):
        threads.submit(lambda: None)
    await until(lambda: not any(t.name.startswith("spool-handler") for t in threading.enumerate()))


async def test_a_handler_calling_sys_exit_fails_its_message(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:exit_now", "mode": "thread", "max_retries": 0}}
    )
    async with client_for(settings) as (client, _):
        msg = await publish(client, "q", {})
        done = await wait_final(client, msg["id"])
        assert done["status"] == "failed"
        assert done["error"]["type"] == "SystemExit"
        later = await publish(client, "q", {"ok": True})
        assert (await wait_final(client, later["id"]))["status"] == "succeeded"
