"""The node-local broker: a ready line per queue plus one scheduler task.

The memory backend is this class alone (with a snapshot at a graceful stop); the sqlite
backend is this class with a Journal, under one rule for every transition: the journal
commits, then the change becomes visible (LocalState._commit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import attrgetter

from ..errors import QueueFull
from ..model import NO_HEADERS, Envelope, Message, new_id, new_message
from . import snapshot
from .actions import OperatorActions
from .base import (
    DeadPage,
    Listener,
    Published,
    QueueStats,
)
from .consuming import Consuming
from .journal import Journal, to_the_end
from .local import QUEUED
from .queues import LocalQueue
from .upkeep import Upkeep

log = logging.getLogger(__name__)

_id, _status, _priority = attrgetter("id"), attrgetter("status"), attrgetter("priority")
_key, _delay = attrgetter("idempotency_key"), attrgetter("delay_s")

# How long a stop waits for commits already under way (a journal write is bounded by
# SQLite's busy timeout; past this the stop goes on and the next start recovers).
CLOSE_COMMITS_S = 2.0

__all__ = ["Journal", "MemoryBroker"]


class MemoryBroker(Consuming, OperatorActions, Upkeep):
    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._journal is not None:
            messages = await self._journal.open()
            changed = self._restore_all(messages, self._journal.paused_queues(), crashed=True)
            if changed:
                await self._journal.write(changed)
        elif self._snapshot_path is not None:
            loaded = await asyncio.to_thread(snapshot.read, self._snapshot_path)
            if loaded is not None:
                self._restore_all(*loaded)
                # Deleted once loaded: from here on the messages live in this process.
                await asyncio.to_thread(snapshot.remove, self._snapshot_path)
                log.info("restored %d messages from %s", len(loaded[0]), self._snapshot_path)

    async def close(self) -> None:
        self._waiters.wake_all()
        paused = [q.name for q in self._queues.values() if q.paused]
        if self._journal is not None:
            # Changes still committing (a take whose consumer the stop cancelled) land
            # first: the last write reads memory, which must show what the file holds.
            try:
                await asyncio.wait_for(self._claims.all_released(), CLOSE_COMMITS_S)
            except TimeoutError:
                log.warning("closing with changes still committing after %g s", CLOSE_COMMITS_S)
            await self._journal.close(self._messages.values(), paused)
        elif self._snapshot_path is not None:
            messages = list(self._messages.values())
            await asyncio.to_thread(snapshot.write, self._snapshot_path, messages, paused)
            log.info("wrote %d messages to %s", len(messages), self._snapshot_path)

    def health(self) -> dict[str, object]:
        if self._journal is None:
            return {"ok": True}
        return self._journal.health()

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ------------------------------------------------------------------ publishing
    async def publish(self, queue: str, envelopes: Sequence[Envelope]) -> list[Published]:
        q = self.queue(queue)
        created_at = self._clock()
        keyed = any(map(_key, envelopes))  # keys are never empty: a set one is truthy
        all_queued = False  # known to be queued every one, without a look at each
        if keyed:
            out = self._with_keys(q, envelopes, created_at)
            fresh = [p.message for p in out if p.created]
        else:
            # The common case, a batch without keys, in as few Python steps as it takes:
            # a batch of 1,000 spends most of its time here.
            if any(map(_delay, envelopes)):
                fresh = [new_message(queue, env, created_at) for env in envelopes]
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
        if len(fresh) > q.room():
            raise QueueFull(
                f"queue {queue!r} holds {q.waiting()} of {q.settings.max_size} waiting messages; "
                f"{len(fresh)} more do not fit",
                retry_after=1,
            )
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
        if self._journal is not None and fresh:
            # Run to the end even if the caller goes away: the rows may be committing.
            await to_the_end(self._commit_publish(q, fresh, all_queued))
        else:
            self._land(q, fresh, all_queued)
        return out

    def _with_keys(
        self, q: LocalQueue, envelopes: Sequence[Envelope], created_at: float
    ) -> list[Published]:
        """A publish where some envelopes carry an idempotency key: a key already held (or
        repeated earlier in the batch) answers with its earlier message, created=False."""
        out: list[Published] = []
        seen: dict[str, Message] = {}
        for env in envelopes:
            key = env.idempotency_key
            if key is not None:
                earlier = seen.get(key) or self._by_key(q, key)
                if earlier is not None:
                    out.append(Published(earlier, created=False))
                    continue
            msg = new_message(q.name, env, created_at)
            if key is not None:
                seen[key] = msg
            out.append(Published(msg, created=True))
        return out

    async def _commit_publish(self, q: LocalQueue, fresh: list[Message], all_queued: bool) -> None:
        assert self._journal is not None
        try:
            await self._journal.write(fresh)
        except BaseException:
            for msg in fresh:  # not committed: give the capacity and the keys back
                self._messages.pop(msg.id, None)
                q.status_counts[msg.status] -= 1
                if msg.idempotency_key is not None:
                    q.idempotency.pop(msg.idempotency_key, None)
            raise
        self._land(q, fresh, all_queued)

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
                    self._schedule(msg)
        self._emit_all(fresh)

    # ------------------------------------------------------------------ reading
    async def get(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    async def wait(self, message_id: str, timeout: float) -> Message | None:
        msg = self._messages.get(message_id)
        if msg is None or msg.status.final:
            return msg
        await self._waiters.wait(message_id, timeout)
        return self._messages.get(message_id, msg)

    async def stats(self, queue: str) -> QueueStats:
        return self.queue(queue).stats()

    def cached_stats(self, queue: str) -> QueueStats:
        return self.queue(queue).stats()

    def queue_names(self) -> list[str]:
        return list(self._queues)

    async def dead(self, queue: str, limit: int, cursor: str | None) -> DeadPage:
        q = self.queue(queue)
        ids = list(reversed(q.dead))  # newest first
        start = 0
        if cursor is not None:
            try:
                start = ids.index(cursor) + 1
            except ValueError:
                start = len(ids)  # the cursor's message was redriven or purged: page is done
        page = [self._messages[i] for i in ids[start : start + limit]]
        more = start + limit < len(ids)
        return DeadPage(page, page[-1].id if more and page else None)
