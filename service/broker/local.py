"""The state of the node-local broker and the bookkeeping every operation shares:
status transitions, the scheduler heap, retention of final messages and dead letters, and
recovery of what a journal or snapshot held."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..config import QueueSettings, ResultsSettings
from ..errors import UnknownQueue
from ..model import FINAL, Message, Status, now
from .base import (
    PROCESS_DIED,
    Listener,
)
from .index import IdIndex
from .journal import Journal
from .queues import LocalQueue
from .waiters import Waiters

log = logging.getLogger(__name__)

# Looked up once, for the broker's per-message paths: in Python 3.11 every `Status.X` is a
# descriptor call on the enum class.
QUEUED, SCHEDULED, RUNNING = Status.QUEUED, Status.SCHEDULED, Status.RUNNING
SUCCEEDED, RETRYING, FAILED = Status.SUCCEEDED, Status.RETRYING, Status.FAILED


class LocalState:
    def __init__(
        self,
        queues: dict[str, QueueSettings],
        results: ResultsSettings,
        *,
        journal: Journal | None = None,
        snapshot_path: Path | None = None,
        clock: Callable[[], float] = now,
        rng: random.Random | None = None,
    ) -> None:
        self._queues = {name: LocalQueue(name, qs) for name, qs in queues.items()}
        self._results = results
        self._journal = journal
        self._snapshot_path = snapshot_path
        self._clock = clock
        self._rng = rng or random.Random()
        self._messages = IdIndex()
        self._finals: OrderedDict[str, None] = OrderedDict()  # retention order
        self._due: list[tuple[float, int, str]] = []  # scheduled + retrying, by due time
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._waiters = Waiters()
        self._listeners: list[Listener] = []

    def queue(self, name: str) -> LocalQueue:
        try:
            return self._queues[name]
        except KeyError:
            raise UnknownQueue(f"queue {name!r} is not configured") from None

    def _by_key(self, q: LocalQueue, key: str) -> Message | None:
        mid = q.idempotency.get(key)
        return self._messages.get(mid) if mid is not None else None

    def _backoff(self, settings: QueueSettings, failures: int) -> float:
        """Exponential backoff with full jitter (AWS's 'full jitter'), capped."""
        ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (failures - 1))
        return self._rng.uniform(0, ceiling)

    def _restore_all(
        self, messages: Iterable[Message], paused: Iterable[str], *, crashed: bool = False
    ) -> list[Message]:
        """Rebuild the queues; returns the messages whose status changed here (were running).

        crashed=True (a journal): a message still `running` was cut short by the process
        dying, which counts as a failed attempt (SPEC), so a message that kills the process
        cannot loop forever. A snapshot only holds what a graceful stop cut short: no failure.
        """
        changed: list[Message] = []
        # Live ones first, then finals by when they ended (retention and dead-letter order);
        # what was running goes last: its outcome (a retry or a dead letter) is decided now.
        order = sorted(
            messages, key=lambda m: (m.status is Status.RUNNING, m.finished_at or 0.0, m.id)
        )
        for msg in order:
            if self._restore(msg, crashed=crashed):
                changed.append(msg)
        for name in paused:
            if name in self._queues:
                self._queues[name].unpaused.clear()
        self._trim_finals()
        for q in self._queues.values():
            self._trim_dead(q)
        return changed

    def _restore(self, msg: Message, *, crashed: bool) -> bool:
        queue = self._queues.get(msg.queue)
        if queue is None:
            log.warning("dropping message %s of unknown queue %r", msg.id, msg.queue)
            return False
        was_running = msg.status is Status.RUNNING
        if was_running:
            # At-least-once: run it again, unless the deaths used up its retries.
            msg.status, msg.started_at = Status.QUEUED, None
            if crashed:
                msg.failures += 1
                msg.error = PROCESS_DIED
                if msg.failures > queue.settings.max_retries:
                    msg.status, msg.finished_at = Status.FAILED, self._clock()
        self._messages[msg.id] = msg
        key = msg.idempotency_key
        if key is not None and queue.idempotency.get(key, "") < msg.id:
            queue.idempotency[key] = msg.id  # ids are time-ordered: the newest holds the key
        if msg.status is Status.FAILED:
            queue.dead[msg.id] = None
            return was_running
        queue.status_counts[msg.status] += 1
        if msg.status.final:
            self._finals[msg.id] = None
        elif msg.status is Status.QUEUED:
            msg.enqueued_at = self._clock()
            queue.push(msg)
        else:
            self._schedule(msg)
        return was_running

    def _transition(self, q: LocalQueue, msg: Message, status: Status) -> None:
        q.status_counts[msg.status] -= 1
        msg.status = status
        final = status in FINAL
        if status is FAILED:
            q.dead[msg.id] = None
            self._trim_dead(q)
        else:
            q.status_counts[status] += 1
            if final:
                self._finals[msg.id] = None
                self._trim_finals()
        if final:
            self._waiters.wake(msg.id)
        self._emit(msg)

    def _emit(self, msg: Message) -> None:
        self._emit_all((msg,))

    def _emit_all(self, msgs: Sequence[Message]) -> None:
        for listener in self._listeners:
            listener(msgs)

    def _schedule(self, msg: Message) -> None:
        assert msg.scheduled_for is not None
        heapq.heappush(self._due, (msg.scheduled_for, next(self._seq), msg.id))
        if self._due[0][2] == msg.id:
            self._wake.set()  # it is the new earliest: the scheduler must sleep less

    def _release_due(self, current: float) -> None:
        while self._due and self._due[0][0] <= current:
            due, _, mid = heapq.heappop(self._due)
            msg = self._messages.get(mid)
            if msg is None or msg.scheduled_for != due:
                continue
            if msg.status not in (Status.SCHEDULED, Status.RETRYING):
                continue
            q = self._queues[msg.queue]
            msg.enqueued_at = current
            self._transition(q, msg, Status.QUEUED)
            q.push(msg)

    def wake(self) -> None:
        """Make the scheduler look at the clock now (tests with a manual clock use this)."""
        self._wake.set()

    async def _sweep(self, current: float) -> None:
        cutoff = current - self._results.ttl_s
        expired: list[str] = []
        for mid in self._finals:
            msg = self._messages[mid]
            if (msg.finished_at or 0.0) > cutoff:
                break
            expired.append(mid)
        for mid in expired:
            self._drop(mid)
        if expired and self._journal is not None:
            await self._journal.forget(expired)

    def _trim_finals(self) -> None:
        over = len(self._finals) - self._results.max_entries
        if over > 0:
            dropped = [self._finals.popitem(last=False)[0] for _ in range(over)]
            for mid in dropped:
                self._drop(mid, from_finals=False)
            self._forget_later(dropped)

    def _trim_dead(self, q: LocalQueue) -> None:
        # Dead letters outlive results.ttl_s; results.max_entries per queue bounds them.
        over = len(q.dead) - self._results.max_entries
        if over > 0:
            oldest = list(itertools.islice(q.dead, over))
            for mid in oldest:
                del q.dead[mid]
                self._drop(mid, from_finals=False)
            self._forget_later(oldest)

    def _forget_later(self, ids: list[str]) -> None:
        if self._journal is not None:
            task = asyncio.get_running_loop().create_task(self._journal.forget(ids))
            task.add_done_callback(_log_task_error)

    def _drop(self, mid: str, *, from_finals: bool = True) -> None:
        msg = self._messages.pop(mid, None)
        if from_finals:
            self._finals.pop(mid, None)
        if msg is None:
            return
        q = self._queues[msg.queue]
        if msg.status is not Status.FAILED:
            q.status_counts[msg.status] -= 1
        if msg.idempotency_key is not None and q.idempotency.get(msg.idempotency_key) == mid:
            del q.idempotency[msg.idempotency_key]


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("journal cleanup failed", exc_info=task.exception())
