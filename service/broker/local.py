"""The state of the node-local broker and the bookkeeping every operation shares: the one
rule for a transition (with a journal: commit, then make it visible), status bookkeeping,
the scheduler heap, retention of final messages and dead letters, and recovery of what a
journal or snapshot held."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import msgspec

from ..config import QueueSettings, ResultsSettings
from ..errors import UnknownQueue
from ..model import FINAL, Message, Status, now
from .base import (
    PROCESS_DIED,
    Listener,
)
from .claims import Claims
from .index import IdIndex
from .journal import Journal, to_the_end
from .queues import LocalQueue
from .waiters import Waiters

log = logging.getLogger(__name__)

# Looked up once, for the broker's per-message paths: in Python 3.11 every `Status.X` is a
# descriptor call on the enum class.
QUEUED, SCHEDULED, RUNNING = Status.QUEUED, Status.SCHEDULED, Status.RUNNING
SUCCEEDED, RETRYING, FAILED = Status.SUCCEEDED, Status.RETRYING, Status.FAILED
_FIELDS = Message.__struct_fields__
_T = TypeVar("_T")


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
        self._claims = Claims()  # only ever holds anything with a journal
        self._pausing = asyncio.Lock()  # with a journal: one paused set committed at a time

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

    # ------------------------------------------------------------------ the one rule
    def _draft(self, msg: Message) -> Message:
        """What a transition edits. Without a journal, the message itself: nothing is
        committed, so the check and the change are one step. With a journal, a copy: it is
        committed first and becomes the message only then (`_commit`)."""
        return msg if self._journal is None else msgspec.structs.replace(msg)

    async def _commit(
        self,
        drafts: Sequence[Message],
        apply: Callable[[], _T],
        *,
        forget: Sequence[str] = (),
        displaced: bool = False,
        undo: Callable[[], None] | None = None,
    ) -> _T:
        """With a journal every transition ends here: the journal commits, then the change
        becomes visible (memory, ready line, waiters, events, counts), in that order only.

        The caller checked its precondition with no await since, and the claims taken here,
        before the first await, keep every other transition off these messages until the
        change is applied or given up. `apply` runs in the same step as the end of the
        COMMIT, so nothing sees the journal's new state without it. A failed commit makes
        nothing visible: the claims go, a message whose entry was popped meanwhile (or by
        the caller: `displaced`) goes back where it waits, `undo` runs, and the caller gets
        the error. Runs to the end even if the caller goes away.
        """
        evicted = self._evictions(drafts)
        if evicted:
            forget, apply = [*forget, *evicted], partial(self._evict_then, evicted, apply)
        ids = [*(d.id for d in drafts), *forget]
        self._claims.hold(ids, displaced=displaced)
        return await to_the_end(self._commit_then_apply(ids, drafts, forget, apply, undo))

    def _evictions(self, drafts: Sequence[Message]) -> list[str]:
        """The oldest results and dead letters that the drafts, once final, push past
        results.max_entries. They are deleted in the same commit and dropped as it lands,
        so the bound holds the moment the outcome is visible (left to the scheduler, a
        reader could still get a result the bound had already evicted)."""
        limit = self._results.max_entries
        finals = sum(d.status in FINAL and d.status is not FAILED for d in drafts)
        out = self._unclaimed(self._finals, len(self._finals) + finals - limit)
        for name, dead in Counter(d.queue for d in drafts if d.status is FAILED).items():
            pool = self._queues[name].dead
            out += self._unclaimed(pool, len(pool) + dead - limit)
        return out

    def _unclaimed(self, pool: Iterable[str], count: int) -> list[str]:
        if count <= 0:
            return []  # the usual case: no walk at all
        return list(itertools.islice((m for m in pool if m not in self._claims), count))

    def _evict_then(self, evicted: list[str], apply: Callable[[], _T]) -> _T:
        for mid in evicted:
            self._drop(mid)
        return apply()

    async def _commit_then_apply(
        self,
        ids: list[str],
        drafts: Sequence[Message],
        forget: Sequence[str],
        apply: Callable[[], _T],
        undo: Callable[[], None] | None,
    ) -> _T:
        assert self._journal is not None
        try:
            await self._journal.write(drafts, forget)
        except BaseException:
            for mid in ids:
                if self._claims.release(mid):
                    self._put_back(mid)
            if undo is not None:
                undo()
            raise
        try:
            return apply()
        finally:
            for mid in ids:
                self._claims.release(mid)

    def _apply(self, q: LocalQueue, msg: Message, draft: Message, old: Status) -> None:
        """Make a transition visible: `msg` takes the draft's fields (with a journal: the
        committed record), then the bookkeeping of leaving `old`."""
        if draft is not msg:
            self._adopt(msg, draft)
        self._moved(q, msg, old)

    @staticmethod
    def _adopt(msg: Message, draft: Message) -> None:
        for name in _FIELDS:
            setattr(msg, name, getattr(draft, name))

    def _moved(self, q: LocalQueue, msg: Message, old: Status) -> None:
        """The bookkeeping of a message that now carries its new status: depth and outcome
        counts, dead letters and retention, long-poll waiters, listeners."""
        status = msg.status
        if old is FAILED:
            del q.dead[msg.id]  # redriven
        else:
            q.status_counts[old] -= 1
        if status is FAILED:
            q.dead[msg.id] = None
            q.counts.failed += 1
            self._waiters.wake(msg.id)
            self._trim_dead(q)
        else:
            q.status_counts[status] += 1
            if status is RETRYING:
                q.counts.retried += 1
            elif status in FINAL:
                self._finals[msg.id] = None
                if status is SUCCEEDED:
                    q.counts.succeeded += 1
                else:
                    q.counts.cancelled += 1
                self._waiters.wake(msg.id)
                self._trim_finals()
        self._emit_all((msg,))

    def _put_back(self, mid: str) -> None:
        """A message whose entry was popped while a change that then failed held it: back
        at the front of its line, or in the scheduler's heap."""
        msg = self._messages.get(mid)
        if msg is None:
            return
        if msg.status is QUEUED:
            self._queues[msg.queue].ready.push_front(msg.id, msg.priority)
        elif msg.status is SCHEDULED or msg.status is RETRYING:
            self._schedule(msg)

    def _emit_all(self, msgs: Sequence[Message]) -> None:
        for listener in self._listeners:
            listener(msgs)

    def _schedule(self, msg: Message) -> None:
        assert msg.scheduled_for is not None
        heapq.heappush(self._due, (msg.scheduled_for, next(self._seq), msg.id))
        if self._due[0][2] == msg.id:
            self._wake.set()  # it is the new earliest: the scheduler must sleep less

    def wake(self) -> None:
        """Make the scheduler look at the clock now (tests with a manual clock use this)."""
        self._wake.set()

    # ------------------------------------------------------------------ retention
    def _trim_finals(self) -> None:
        over = len(self._finals) - self._results.max_entries
        if over > 0:
            if self._journal is not None:
                self._wake.set()  # the scheduler commits their deletes first (upkeep.py)
                return
            for mid in list(itertools.islice(self._finals, over)):
                self._drop(mid)

    def _trim_dead(self, q: LocalQueue) -> None:
        # Dead letters outlive results.ttl_s; results.max_entries per queue bounds them.
        over = len(q.dead) - self._results.max_entries
        if over > 0:
            if self._journal is not None:
                self._wake.set()
                return
            for mid in list(itertools.islice(q.dead, over)):
                self._drop(mid)

    def _drop(self, mid: str) -> None:
        """Forget a final message or a dead letter (retention)."""
        msg = self._messages.pop(mid, None)
        if msg is None:
            return
        q = self._queues[msg.queue]
        if msg.status is FAILED:
            q.dead.pop(mid, None)
        else:
            self._finals.pop(mid, None)
            q.status_counts[msg.status] -= 1
        if msg.idempotency_key is not None and q.idempotency.get(msg.idempotency_key) == mid:
            del q.idempotency[msg.idempotency_key]
