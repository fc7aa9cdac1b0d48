"""What the local broker holds, and the bookkeeping every change shares: the queues, every
message by id, final messages in retention order, the scheduler's heap, long-poll waiters
and listeners; applying a change, retention past results.max_entries, and recovery of what
a previous run left."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

from ..config import QueueSettings, ResultsSettings
from ..model import FINAL, Message, Progress, Status
from ..tasks import TaskOwner
from .base import Listener, ProgressListener
from .claims import Claims
from .commits import for_storage
from .index import IdIndex
from .policy import Queues, give_back, over_limit, record_process_death, recovery_order
from .queues import LocalQueue
from .storage import Recovered, Storage
from .waiters import Waiters

log = logging.getLogger(__name__)

# Looked up once, for the per-message paths: in Python 3.11 every `Status.X` is a
# descriptor call on the enum class.
QUEUED, SCHEDULED, RUNNING = Status.QUEUED, Status.SCHEDULED, Status.RUNNING
SUCCEEDED, RETRYING, FAILED = Status.SUCCEEDED, Status.RETRYING, Status.FAILED


class LocalState:
    def __init__(
        self,
        queues: dict[str, QueueSettings],
        results: ResultsSettings,
        storage: Storage,
        clock: Callable[[], float],
        tasks: TaskOwner,
    ) -> None:
        # queues[name] raises UnknownQueue (404) for a name that is not configured.
        self.queues = Queues({name: LocalQueue(name, qs) for name, qs in queues.items()})
        self.results = results
        self.clock = clock
        self.messages = IdIndex()
        self.commits = for_storage(
            storage, self.messages, self.put_back, self.evictions, self.drop_all, tasks
        )
        self.finals: OrderedDict[str, None] = OrderedDict()  # retention order
        self.due: list[tuple[float, int, str]] = []  # scheduled + retrying, by due time
        self._seq = itertools.count()
        self.wake = asyncio.Event()  # the upkeep task looks at the clock and retention
        self.waiters = Waiters()
        self.listeners: list[Listener] = []
        self.progress_listeners: list[ProgressListener] = []

    def progress(self, message_id: str, attempt: int, progress: Progress) -> bool:
        """A handler's report (progress.py): shown on its message while that attempt runs;
        False when it came too late."""
        msg = self.messages.get(message_id)
        if msg is None or msg.status is not RUNNING or msg.attempts != attempt:
            return False
        msg.progress = progress
        self.waiters.wake_progress(message_id)
        for listener in self.progress_listeners:
            listener(msg)
        return True

    def by_key(self, q: LocalQueue, key: str) -> Message | None:
        mid = q.idempotency.get(key)
        return self.messages.get(mid) if mid is not None else None

    # ------------------------------------------------------------------ applying a change
    def moved(self, q: LocalQueue, msg: Message, old: Status) -> None:
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
            self.waiters.wake(msg.id)
            self.trim(q.dead)
        else:
            q.status_counts[status] += 1
            if status is RETRYING:
                q.counts.retried += 1
            elif status in FINAL:
                self.finals[msg.id] = None
                if status is SUCCEEDED:
                    q.counts.succeeded += 1
                else:
                    q.counts.cancelled += 1
                self.waiters.wake(msg.id)
                self.trim(self.finals)
        self.emit((msg,))

    def emit(self, msgs: Sequence[Message]) -> None:
        for listener in self.listeners:
            listener(msgs)

    def schedule(self, msg: Message) -> None:
        assert msg.scheduled_for is not None
        heapq.heappush(self.due, (msg.scheduled_for, next(self._seq), msg.id))
        if self.due[0][2] == msg.id:
            self.wake.set()  # it is the new earliest: the scheduler must sleep less

    def put_back(self, mid: str) -> None:
        """A message whose entry was popped while a change that then failed held it: back
        at the front of its line, or in the scheduler's heap."""
        msg = self.messages.get(mid)
        if msg is None:
            return
        if msg.status is QUEUED:
            self.queues[msg.queue].ready.push_front(msg.id, msg.priority)
        elif msg.status is SCHEDULED or msg.status is RETRYING:
            self.schedule(msg)

    # ------------------------------------------------------------------ retention
    def trim(self, ids_oldest_first: dict[str, None]) -> None:
        """Finals, or one queue's dead letters (which outlive results.ttl_s), past
        results.max_entries: the oldest go."""
        if len(ids_oldest_first) > self.results.max_entries:
            victims = over_limit(ids_oldest_first, self.results.max_entries)
            self.commits.retire(victims, self.drop_all, self.wake.set)

    def evictions(
        self, drafts: Sequence[Message], forget: Sequence[str], claims: Claims
    ) -> list[str]:
        """The oldest results and dead letters that the drafts, once applied and `forget`
        deleted, push past results.max_entries; none of them claimed, none in `forget`
        (a retention commit forgets what is past the bound already: that is not a further
        eviction of its own)."""
        if not drafts:
            return []  # nothing added: nothing pushed past the bound
        limit = self.results.max_entries
        gone = set(forget)
        finals = sum(d.status in FINAL and d.status is not FAILED for d in drafts)
        finals -= sum(mid in self.finals for mid in gone)
        out = _unclaimed(self.finals, len(self.finals) + finals - limit, claims, gone)
        for name, dead in Counter(d.queue for d in drafts if d.status is FAILED).items():
            pool = self.queues[name].dead
            dead -= sum(mid in pool for mid in gone)
            out += _unclaimed(pool, len(pool) + dead - limit, claims, gone)
        return out

    def drop_all(self, ids: list[str]) -> None:
        for mid in ids:
            self.drop(mid)

    def drop(self, mid: str) -> None:
        """Forget a final message or a dead letter (retention)."""
        msg = self.messages.pop(mid, None)
        if msg is None:
            return
        q = self.queues[msg.queue]
        if msg.status is FAILED:
            q.dead.pop(mid, None)
        else:
            self.finals.pop(mid, None)
            q.status_counts[msg.status] -= 1
        if msg.idempotency_key is not None and q.idempotency.get(msg.idempotency_key) == mid:
            del q.idempotency[msg.idempotency_key]

    # ------------------------------------------------------------------ recovery
    def restore(self, recovered: Recovered) -> list[Message]:
        """Rebuild the queues from what a previous run left; returns the messages whose
        status changed here (they were running), for the storage to keep."""
        for name, counts in recovered.counts.items():
            if name in self.queues:
                self.queues[name].counts = dataclasses.replace(counts)
        changed = [
            msg
            for msg in recovery_order(recovered.messages)
            if self._restore(msg, crashed=recovered.crashed)
        ]
        for name in recovered.paused:
            if name in self.queues:
                self.queues[name].unpaused.clear()
        self.trim(self.finals)
        for q in self.queues.values():
            self.trim(q.dead)
        return changed

    def _restore(self, msg: Message, *, crashed: bool) -> bool:
        queue = self.queues.get(msg.queue)
        if queue is None:
            log.warning("dropping message %s of unknown queue %r", msg.id, msg.queue)
            return False
        was_running = msg.status is RUNNING
        if was_running:
            # At-least-once: run it again, unless a death used up its retries.
            give_back(msg)
            if crashed:
                record_process_death(msg, queue.settings, self.clock())
                # Counted as `moved` would: the storage counts the same change as it
                # writes it (the sqlite journal's triggers), so the two stay equal.
                if msg.status is FAILED:
                    queue.counts.failed += 1
        self.messages[msg.id] = msg
        key = msg.idempotency_key
        if key is not None and queue.idempotency.get(key, "") < msg.id:
            queue.idempotency[key] = msg.id  # ids are time-ordered: the newest holds the key
        if msg.status is FAILED:
            queue.dead[msg.id] = None
            return was_running
        queue.status_counts[msg.status] += 1
        if msg.status.final:
            self.finals[msg.id] = None
        elif msg.status is QUEUED:
            msg.enqueued_at = self.clock()
            queue.push(msg)
        else:
            self.schedule(msg)
        return was_running


def _unclaimed(pool: dict[str, None], count: int, claims: Claims, gone: set[str]) -> list[str]:
    if count <= 0:
        return []  # the usual case: no walk at all
    return list(itertools.islice((m for m in pool if m not in claims and m not in gone), count))
