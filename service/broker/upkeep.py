"""The local broker's one background task: the scheduler (delays and retry backoff) and
retention (results.ttl_s and results.max_entries).

Both follow the one rule (commits.py): where the storage commits, a due message is `queued`
only once that is committed, and a message leaves memory only once its delete is. A commit
that fails leaves everything as it was, and the task tries again a moment later.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math

from ..model import Message, Status
from .policy import expired, over_limit
from .state import QUEUED, RETRYING, SCHEDULED, LocalState

log = logging.getLogger(__name__)

# The scheduler wakes at least this often, so a clock that jumps still gets noticed; after
# a failed commit it waits this long before the next try.
SCHEDULER_MAX_SLEEP_S = 1.0
SWEEP_INTERVAL_S = 1.0
# Deletes per retention commit: a burst's worth of expired results is spread over several
# commits, so writes queued behind one never wait long.
RETENTION_BATCH = 5000


class Upkeep:
    def __init__(self, state: LocalState) -> None:
        self._state = state
        self._commits = state.commits
        self._next_sweep = 0.0  # when retention next expires by results.ttl_s
        self._hold_off_until = 0.0  # after a failed commit: no round before this
        self._failing = False  # the last round failed (logged once, until one succeeds)

    async def run(self) -> None:
        state = self._state
        while True:
            state.wake.clear()  # first: a wake-up set while this round awaits is kept
            current = state.clock()
            if current >= self._hold_off_until:
                await self._round(current)
                current = state.clock()
            await self._sleep(current)

    async def _round(self, current: float) -> None:
        """Due messages to queued, then retention; a failed commit holds off the next round."""
        try:
            await self._release(current)
            sweep = current >= self._next_sweep
            if await self._retain(current, expire=sweep):
                self._state.wake.set()  # more than one batch: go on at once
            if sweep:
                self._next_sweep = current + SWEEP_INTERVAL_S
        except Exception as exc:
            # A storage that cannot write (full disk, read-only): nothing changed.
            if not self._failing:
                log.warning("the scheduler cannot commit, retrying each second: %s", exc)
            self._failing = True
            self._hold_off_until = current + SCHEDULER_MAX_SLEEP_S
        else:
            if self._failing:
                log.warning("the scheduler commits again")
            self._failing = False

    async def _sleep(self, current: float) -> None:
        """Until the next due time, the hold-off's end, or a wake-up, at most a second."""
        state = self._state
        sleep = SCHEDULER_MAX_SLEEP_S
        if current < self._hold_off_until:
            sleep = min(sleep, self._hold_off_until - current)
        elif state.due:
            sleep = min(sleep, max(0.0, state.due[0][0] - current))
        try:
            await asyncio.wait_for(state.wake.wait(), timeout=sleep)
        except TimeoutError:
            pass

    # ------------------------------------------------------------------ the scheduler
    def _pop_due(self, current: float) -> list[Message]:
        state, due = self._state, []
        while state.due and state.due[0][0] <= current:
            at, _, mid = heapq.heappop(state.due)
            msg = state.messages.get(mid)
            if msg is None or msg.scheduled_for != at:
                continue  # a tombstone: cancelled, or rescheduled since
            if msg.status is not SCHEDULED and msg.status is not RETRYING:
                continue
            if self._commits.claims.displace(mid):
                continue  # its cancel is committing; should that fail, it comes back
            due.append(msg)
        return due

    async def _release(self, current: float) -> None:
        due = self._pop_due(current)
        if not due:
            return
        olds = [msg.status for msg in due]  # before the drafts: a draft may be the message
        drafts = [self._commits.draft(msg) for msg in due]
        for draft in drafts:
            draft.status, draft.enqueued_at = QUEUED, current
        committing = self._commits.change(drafts, self._queue_all, due, olds, displaced=True)
        if committing is not None:
            await committing

    def _queue_all(self, due: list[Message], olds: list[Status]) -> None:
        for msg, old in zip(due, olds, strict=True):
            q = self._state.queues[msg.queue]
            self._state.moved(q, msg, old)
            q.push(msg)

    # ------------------------------------------------------------------ retention
    async def _retain(self, current: float, *, expire: bool) -> bool:
        """Drops what retention drops (a delete committed first, where the storage
        commits); True when more is left to drop."""
        state, limit = self._state, self._state.results.max_entries
        cutoff = current - state.results.ttl_s if expire else -math.inf
        finals = ((mid, state.messages[mid].finished_at) for mid in state.finals)
        victims = expired(finals, cutoff, over=len(state.finals) - limit)
        for q in state.queues.values():
            victims += over_limit(q.dead, limit)  # dead letters outlive results.ttl_s
        victims = [mid for mid in victims if mid not in self._commits.claims]  # a redrive first
        if not victims:
            return False
        batch = victims[:RETENTION_BATCH]
        committing = self._commits.change((), state.drop_all, batch, forget=batch)
        if committing is not None:
            await committing
        return len(victims) > len(batch)
