"""The node-local broker's one background task: the scheduler (delays and retry backoff)
and retention (results.ttl_s and results.max_entries).

With a journal both follow the broker's one rule: a due message is `queued` only once that
is committed, and a message leaves memory only once its delete is committed. A commit that
fails leaves everything as it was, and the task tries again a moment later.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from functools import partial

from msgspec.structs import replace

from ..model import Message, Status
from .local import QUEUED, RETRYING, SCHEDULED, LocalState

log = logging.getLogger(__name__)

# The scheduler wakes at least this often, so a clock that jumps still gets noticed; after
# a failed commit it waits this long before the next try.
SCHEDULER_MAX_SLEEP_S = 1.0
SWEEP_INTERVAL_S = 1.0
# Deletes per retention commit: a burst's worth of expired results is spread over several
# commits, so writes queued behind one never wait long.
RETENTION_BATCH = 5000


class Upkeep(LocalState):
    async def run(self) -> None:
        next_sweep = hold_off_until = 0.0
        failing = False
        while True:
            self._wake.clear()  # first: a wake-up set while this round awaits is kept
            current = self._clock()
            if self._journal is None:
                self._release(current)
                if current >= next_sweep:
                    self._expire(current)
                    next_sweep = current + SWEEP_INTERVAL_S
            elif current >= hold_off_until:
                try:
                    await self._release_committed(current)
                    sweep = current >= next_sweep
                    if await self._retain_committed(current, expire=sweep):
                        self._wake.set()  # more than one batch: go on at once
                    if sweep:
                        next_sweep = current + SWEEP_INTERVAL_S
                except Exception as exc:
                    # A journal that cannot write (full disk, read-only): nothing changed.
                    if not failing:
                        log.warning("the scheduler cannot commit, retrying each second: %s", exc)
                    failing = True
                    hold_off_until = current + SCHEDULER_MAX_SLEEP_S
                else:
                    if failing:
                        log.warning("the scheduler commits again")
                    failing = False
                current = self._clock()
            sleep = SCHEDULER_MAX_SLEEP_S
            if current < hold_off_until:
                sleep = min(sleep, hold_off_until - current)
            elif self._due:
                sleep = min(sleep, max(0.0, self._due[0][0] - current))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=sleep)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ the scheduler
    def _pop_due(self, current: float) -> list[Message]:
        due: list[Message] = []
        while self._due and self._due[0][0] <= current:
            at, _, mid = heapq.heappop(self._due)
            msg = self._messages.get(mid)
            if msg is None or msg.scheduled_for != at:
                continue  # a tombstone: cancelled, or rescheduled since
            if msg.status is not SCHEDULED and msg.status is not RETRYING:
                continue
            if self._claims.displace(mid):
                continue  # its cancel is committing; should that fail, it comes back
            due.append(msg)
        return due

    def _release(self, current: float) -> None:
        for msg in self._pop_due(current):
            old = msg.status
            msg.status, msg.enqueued_at = QUEUED, current
            self._queue_again(msg, msg, old)

    async def _release_committed(self, current: float) -> None:
        due = self._pop_due(current)
        if due:
            drafts = [replace(msg, status=QUEUED, enqueued_at=current) for msg in due]
            await self._commit(drafts, partial(self._queue_all, due, drafts), displaced=True)

    def _queue_all(self, due: list[Message], drafts: list[Message]) -> None:
        for msg, draft in zip(due, drafts, strict=True):
            self._queue_again(msg, draft, msg.status)

    def _queue_again(self, msg: Message, draft: Message, old: Status) -> None:
        q = self._queues[msg.queue]
        self._apply(q, msg, draft, old)
        q.push(msg)

    # ------------------------------------------------------------------ retention
    def _oldest_finals(self, over: int, cutoff: float) -> list[str]:
        """The final messages retention drops: the `over` oldest, and any that ended
        before `cutoff`."""
        out: list[str] = []
        for n, mid in enumerate(self._finals):
            if n >= over and (self._messages[mid].finished_at or 0.0) > cutoff:
                break
            out.append(mid)
        return out

    def _expire(self, current: float) -> None:
        """Without a journal: results older than results.ttl_s go now."""
        for mid in self._oldest_finals(0, current - self._results.ttl_s):
            self._drop(mid)

    async def _retain_committed(self, current: float, *, expire: bool) -> bool:
        """Deletes what retention drops, then drops it; True when more is left to drop."""
        limit = self._results.max_entries
        cutoff = current - self._results.ttl_s if expire else -math.inf
        victims = self._oldest_finals(len(self._finals) - limit, cutoff)
        for q in self._queues.values():
            victims += itertools.islice(q.dead, max(0, len(q.dead) - limit))
        victims = [mid for mid in victims if mid not in self._claims]  # a redrive goes first
        if not victims:
            return False
        batch = victims[:RETENTION_BATCH]
        await self._commit([], partial(self._drop_all, batch), forget=batch)
        return len(victims) > len(batch)

    def _drop_all(self, ids: list[str]) -> None:
        for mid in ids:
            self._drop(mid)
