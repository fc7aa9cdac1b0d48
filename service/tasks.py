"""TaskOwner: the one owner of the short tasks nobody awaits to their end.

A task made with `loop.create_task` and dropped (a commit that must land although its
caller went away, an outcome recorded while the consumer is cancelled) is not awaited by
anyone at a stop: the broker could close under it, and its failure would go unseen. Each
such task is spawned here instead (aiojobs' Scheduler.spawn and Scheduler.shield are the
model): the owner keeps it until it ends, logs a failure nobody else will see, and at a
stop `close()` awaits the rest with a bound, then cancels what is left.

The runtime makes one, hands it to the broker (create_broker) for the broker's own such tasks
(the local broker's commits, the amqp broker's consumer starts and stops), and closes it
before the broker closes (Runtime._stop, phase 5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from . import grace

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskOwner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        """Owned tasks still running."""
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run `coro` in a task this owner keeps until it ends; a failure is logged."""
        task = self._own(asyncio.get_running_loop().create_task(coro, name=name))
        task.add_done_callback(_log_failure)
        return task

    def start_shielded(
        self, coro: Coroutine[Any, Any, T], name: str | None = None
    ) -> asyncio.Future[T]:
        """Start `coro` now, in an owned task, and give the caller a shielded view of it: a
        cancellation of the caller leaves the work running to its end (a commit already
        handed to the storage lands or rolls back in full), and the stop waits for it. Its
        failure is the caller's to see, so it is not logged here."""
        task = self._own(asyncio.get_running_loop().create_task(coro, name=name))
        task.add_done_callback(_retrieve)
        return asyncio.shield(task)

    async def shield(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> T:
        """`coro`'s result, as `asyncio.shield` would give it, in an owned task: a
        cancellation of the caller leaves the work running to its end (bookkeeping survives
        cancellation), and the stop waits for it before the broker closes.

        No task where the coroutine finishes at once: its first step runs inline, so the
        memory broker, which records an outcome without awaiting anything, costs no task and
        no two extra trips through the loop per message. A coroutine that does suspend (a
        journal write) goes on in the owned task from where it stopped.
        """
        try:
            first = coro.send(None)
        except StopIteration as done:
            result: T = done.value
            return result
        loop = asyncio.get_running_loop()
        task: asyncio.Task[T] = self._own(loop.create_task(_resume(coro, first), name=name))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller has gone: nobody will see how the task ends but its owner.
            task.add_done_callback(_log_failure)
            raise

    async def close(self, grace_s: float, settle_s: float) -> None:
        """Waits up to `grace_s` for the owned tasks (those spawned meanwhile too), then
        cancels what is left and gives it `settle_s` to end. Spawning still works after."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        left = set(self._tasks)
        if not left:
            return
        log.warning(
            "%d background tasks still running after %.1f s: cancelling them (%s)",
            len(left),
            grace_s,
            ", ".join(sorted(t.get_name() for t in left)),
        )
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=settle_s)

    def _own(self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class BrokerTasks:
    """Where a broker's own tasks go: the runtime's owner, which the runtime's stop closes
    (phase 5) before the broker closes, or, for a broker made without one (a test, a tool),
    an owner of its own that the broker's close() closes, with the stop's bounds."""

    def __init__(self, given: TaskOwner | None) -> None:
        self.owner = TaskOwner() if given is None else given
        self._own = given is None

    async def close_own(self) -> None:
        if self._own:
            await self.owner.close(grace.CANCEL_GRACE_S, grace.SETTLE_S)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the caller may be gone: mark the outcome as seen


def _log_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    failure = task.exception()  # also marks it as seen: asyncio logs no "never retrieved"
    if failure is not None:
        log.error("background task %s failed", task.get_name(), exc_info=failure)


async def _resume(coro: Coroutine[Any, Any, T], first: Any) -> T:
    result: T = await _Resume(coro, first)
    return result


class _Resume:
    """The rest of a coroutine that has already yielded `first`, as an awaitable."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        pending = self._first
        while True:
            try:
                sent = yield pending
            except BaseException as exc:
                try:
                    pending = self._coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = self._coro.send(sent)
                except StopIteration as done:
                    return done.value
