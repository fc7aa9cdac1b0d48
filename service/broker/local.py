"""The node-local broker behind the memory and sqlite backends: a ready line per queue and
one background task, over a Storage (storage.py) that is nothing, a snapshot, or the
sqlite journal.

One class composed of parts: LocalState (state.py) holds the messages and applies every
change through its Commits (commits.py: the storage commits, then the change is applied);
OperatorActions (actions.py) and Upkeep (upkeep.py, the scheduler and retention) work on
that state. Publishing and what consumers do per message are this class's own methods:
the hot paths, with no hop from part to part. The decisions themselves (outcome, backoff,
keys, room, paging) are policy.py's, shared with the amqp backend.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from functools import partial
from itertools import repeat
from operator import attrgetter

from ..config import QueueSettings, ResultsSettings
from ..model import NO_HEADERS, Envelope, Message, Progress, Status, new_id, new_message, now
from ..tasks import BrokerTasks, TaskOwner
from ..tracing import Incoming
from . import base
from .actions import OperatorActions
from .base import (
    DeadPage,
    Finished,
    Listener,
    Outcome,
    ProgressListener,
    Published,
    QueueStats,
)
from .policy import check_room, dead_page, give_back, record_outcome, resolve_keys, start_attempt
from .queues import LocalQueue
from .state import QUEUED, RETRYING, RUNNING, SCHEDULED, LocalState
from .storage import NoStorage, Storage
from .upkeep import Upkeep

log = logging.getLogger(__name__)

_id, _status, _priority = attrgetter("id"), attrgetter("status"), attrgetter("priority")
_key, _delay = attrgetter("idempotency_key"), attrgetter("delay_s")


class LocalBroker(base.OperatorActionsOf):
    def __init__(
        self,
        queues: dict[str, QueueSettings],
        results: ResultsSettings,
        *,
        storage: Storage | None = None,
        clock: Callable[[], float] = now,
        rng: random.Random | None = None,
        tasks: TaskOwner | None = None,
    ) -> None:
        self.storage: Storage = storage if storage is not None else NoStorage()
        # The commits under way are tasks of `tasks` (the runtime's), which the stop awaits
        # before it closes the broker.
        self._tasks = BrokerTasks(tasks)
        self._clock = clock
        self._rng = rng or random.Random()
        self._state = state = LocalState(queues, results, self.storage, clock, self._tasks.owner)
        self._commits = state.commits
        self._queues = state.queues  # queues[name] raises UnknownQueue (404)
        self._messages = state.messages
        self.operations = OperatorActions(state)  # cancel, pause, resume, redrive
        self._upkeep = Upkeep(state)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        changed = self._state.restore(await self.storage.load())
        if changed:
            await self.storage.write(changed)  # the deaths the restore counted

    async def run(self) -> None:
        await self._upkeep.run()

    async def close(self) -> None:
        self._state.waiters.wake_all()
        # Changes still committing (a take whose consumer was cancelled) land first: the last
        # write reads memory, which must show what the storage holds. With the runtime's
        # owner, its stop has done this already (Runtime._stop, phase 5).
        await self._tasks.close_own()
        queues = self._state.queues.values()
        paused = [q.name for q in queues if q.paused]
        counts = {q.name: dataclasses.replace(q.counts) for q in queues}
        await self.storage.close(self._messages.values(), paused, counts)

    def health(self) -> dict[str, object]:
        return self.storage.health()

    def sharing_nodes(self) -> int:
        return 1  # one node holds the queues: its bucket is the whole limit

    def listen(self, listener: Listener) -> Callable[[], None]:
        listeners = self._state.listeners
        listeners.append(listener)
        return lambda: listeners.remove(listener)

    def listen_progress(self, listener: ProgressListener) -> Callable[[], None]:
        listeners = self._state.progress_listeners
        listeners.append(listener)
        return lambda: listeners.remove(listener)

    def report_progress(self, message_id: str, attempt: int, progress: Progress) -> bool:
        return self._state.progress(message_id, attempt, progress)

    def wake(self) -> None:
        """Make the scheduler look at the clock now (tests with a manual clock use this)."""
        self._state.wake.set()

    # ------------------------------------------------------------------ publishing
    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], trace: Incoming | None = None
    ) -> list[Published]:
        q = self._queues[queue]
        created_at = self._clock()
        keyed = any(map(_key, envelopes))  # keys are never empty: a set one is truthy
        all_queued = False  # known to be queued every one, without a look at each
        if keyed:
            out = resolve_keys(
                envelopes,
                partial(self._state.by_key, q),
                lambda env: new_message(queue, env, created_at, trace),
            )
            fresh = [p.message for p in out if p.created]
        else:
            # The common case, a batch without keys, in as few Python steps as it takes:
            # a batch of 1,000 spends most of its time here.
            if trace is not None or any(map(_delay, envelopes)):
                fresh = [new_message(queue, env, created_at, trace) for env in envelopes]
            else:  # nothing delayed (the usual batch): new_message's queued case, inlined
                all_queued = True
                fresh = [
                    Message(  # positional: tests/test_field_order.py pins Message's order
                        new_id(),
                        queue,
                        QUEUED,
                        bytes(env.body),
                        env.headers or NO_HEADERS,
                        env.priority,
                        created_at,
                        enqueued_at=created_at,
                    )
                    for env in envelopes
                ]
            out = list(map(Published, fresh, repeat(True)))
        check_room(queue, q.waiting(), q.settings.max_size, len(fresh), reserved=q.reserved)
        # Hold the capacity and the keys before any await, so concurrent publishes see them.
        self._messages.add_all(fresh)
        if all_queued:
            q.status_counts[QUEUED] += len(fresh)
        else:
            q.status_counts.update(map(_status, fresh))
        if keyed:
            for msg in fresh:
                if msg.idempotency_key is not None:
                    q.idempotency[msg.idempotency_key] = msg.id
        committing = self._commits.change(
            fresh,
            self._land,
            q,
            fresh,
            all_queued,
            claim=False,  # new: nothing else can reach them before they land
            undo=partial(self._unhold, q, fresh),
        )
        if committing is not None:
            await committing
        return out

    def _unhold(self, q: LocalQueue, fresh: list[Message]) -> None:
        """Not committed: give the capacity and the keys back."""
        for msg in fresh:
            self._messages.pop(msg.id, None)
            q.status_counts[msg.status] -= 1
            if msg.idempotency_key is not None:
                q.idempotency.pop(msg.idempotency_key, None)

    def _land(self, q: LocalQueue, fresh: list[Message], all_queued: bool) -> None:
        q.counts.published += len(fresh)
        priorities = set(map(_priority, fresh))
        if len(priorities) == 1 and (all_queued or all(map(QUEUED.__eq__, map(_status, fresh)))):
            q.ready.push_many(map(_id, fresh), priorities.pop())  # the usual batch: one step
        else:
            for msg in fresh:
                if msg.status is QUEUED:
                    q.push(msg)
                else:
                    self._state.schedule(msg)
        self._state.emit(fresh)

    # ------------------------------------------------------------------ consuming
    async def take(self, queue: str) -> Message:
        q = self._queues[queue]
        while True:
            if q.paused:
                await q.unpaused.wait()
            mid, priority = await q.ready.get()
            msg = self._messages.get(mid)
            if msg is None or msg.status is not QUEUED:
                continue  # cancelled while waiting: a tombstone
            if q.paused:
                q.ready.push_front(mid, priority)  # paused while we waited: back, same place
                continue
            commits = self._commits
            if mid in commits.claims:
                commits.claims.displace(mid)
                continue  # its cancel is committing; should that fail, it comes back
            started = commits.draft(msg)
            start_attempt(started, self._clock())
            # "running" is committed first: if the process dies now, the attempt still
            # counts. Not committed: it never started, and is back at the front.
            committing = commits.change_one(started, self._state.moved, q, msg, QUEUED, True)
            if committing is not None:
                await committing
            return msg

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        """Raises (the journal's NotCommitted) with nothing changed when the outcome cannot
        be committed: the message stays `running`, as the journal holds it, and the same
        outcome may be offered again."""
        q = self._queues[message.queue]
        done = self._commits.draft(message)
        label = record_outcome(done, outcome, q.settings, self._clock(), self._rng)
        committing = self._commits.change_one(done, self._finished, q, message, RUNNING, False)
        if committing is not None:
            await committing
        return Finished(message, label)

    def _finished(self, q: LocalQueue, msg: Message, old: Status) -> None:
        self._state.moved(q, msg, old)
        if msg.status is RETRYING or msg.status is SCHEDULED:  # a retry, or a snooze
            self._state.schedule(msg)

    async def interrupt(self, message: Message) -> None:
        """Raises with nothing changed when the journal cannot commit it: the message stays
        `running`; the journal's last write at stop gives it back (close)."""
        q = self._queues[message.queue]
        given_back = self._commits.draft(message)
        give_back(given_back)
        apply = self._given_back
        committing = self._commits.change_one(given_back, apply, q, message, RUNNING, False)
        if committing is not None:
            await committing

    def _given_back(self, q: LocalQueue, msg: Message, old: Status) -> None:
        self._state.moved(q, msg, old)
        q.ready.push_front(msg.id, msg.priority)

    # ------------------------------------------------------------------ reading
    async def get(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    async def wait(
        self, message_id: str, timeout: float, *, progress: bool = False
    ) -> Message | None:
        msg = self._messages.get(message_id)
        if msg is None or msg.status.final:
            return msg
        await self._state.waiters.wait(message_id, timeout, progress=progress)
        return self._messages.get(message_id, msg)

    async def stats(self, queue: str) -> QueueStats:
        return self._queues[queue].stats()

    def cached_stats(self, queue: str) -> QueueStats:
        return self._queues[queue].stats()

    def queue_names(self) -> list[str]:
        return list(self._state.queues)

    async def dead(self, queue: str, limit: int, cursor: str | None) -> DeadPage:
        ids, next_cursor = dead_page(list(reversed(self._queues[queue].dead)), limit, cursor)
        return DeadPage([self._messages[i] for i in ids], next_cursor)

    def queue(self, name: str) -> LocalQueue:
        return self._queues[name]
