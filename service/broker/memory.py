"""The node-local broker: asyncio priority queues plus one scheduler task.

The memory backend is this class alone (with a snapshot at a graceful stop); the sqlite
backend is this class with a Journal that commits every transition before it takes effect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..config import QueueSettings, ResultsSettings
from ..errors import Conflict, NotFound, QueueFull, UnknownQueue
from ..model import NO_HEADERS, Envelope, ErrorInfo, Message, Status, new_id, now
from . import snapshot
from .base import (
    DeadPage,
    Failed,
    Finished,
    Listener,
    Outcome,
    Published,
    QueueStats,
    Redriven,
    Succeeded,
)
from .queues import LocalQueue

log = logging.getLogger(__name__)

# The scheduler wakes at least this often, so a clock that jumps still gets noticed.
SCHEDULER_MAX_SLEEP_S = 1.0
_T = TypeVar("_T")


class Journal(Protocol):
    """Durable storage under a LocalBroker. `write` returns only once the rows are committed."""

    async def open(self) -> list[Message]: ...

    async def write(self, messages: Sequence[Message]) -> None: ...

    async def forget(self, ids: Sequence[str]) -> None: ...

    async def close(self, messages: Iterable[Message], paused: Sequence[str]) -> None: ...

    def paused_queues(self) -> list[str]: ...

    async def set_paused(self, queues: Sequence[str]) -> None: ...

    def health(self) -> dict[str, object]: ...


class MemoryBroker:
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
        self._messages: dict[str, Message] = {}
        self._finals: OrderedDict[str, None] = OrderedDict()  # retention order
        self._due: list[tuple[float, int, str]] = []  # scheduled + retrying, by due time
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._listeners: list[Listener] = []

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
                msg.error = ErrorInfo("ProcessDied", "the process died while the attempt ran")
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
            queue.push(msg, next(self._seq))
        else:
            self._schedule(msg)
        return was_running

    async def run(self) -> None:
        """The scheduler (delays and retry backoff) and the retention sweep, in one task."""
        next_sweep = 0.0
        while True:
            current = self._clock()
            self._release_due(current)
            if current >= next_sweep:
                await self._sweep(current)
                next_sweep = current + 1.0
            sleep = SCHEDULER_MAX_SLEEP_S
            if self._due:
                sleep = min(sleep, max(0.0, self._due[0][0] - current))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=sleep)
            except TimeoutError:
                pass

    async def close(self) -> None:
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        paused = [q.name for q in self._queues.values() if q.paused]
        if self._journal is not None:
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
    def queue(self, name: str) -> LocalQueue:
        try:
            return self._queues[name]
        except KeyError:
            raise UnknownQueue(f"queue {name!r} is not configured") from None

    async def publish(self, queue: str, envelopes: Sequence[Envelope]) -> list[Published]:
        q = self.queue(queue)
        out: list[Published] = []
        fresh: list[Message] = []
        seen: dict[str, Message] = {}
        created_at = self._clock()
        for env in envelopes:
            key = env.idempotency_key
            if key is not None:
                earlier = seen.get(key) or self._by_key(q, key)
                if earlier is not None:
                    out.append(Published(earlier, created=False))
                    continue
            msg = Message(
                id=new_id(),
                queue=queue,
                status=Status.SCHEDULED if env.delay_s > 0 else Status.QUEUED,
                body=bytes(env.body),
                # Most messages have no headers: they share one empty dict (never mutated;
                # a handler's context gets a copy), 64 bytes less per held message.
                headers=env.headers or NO_HEADERS,
                priority=env.priority,
                created_at=created_at,
                scheduled_for=created_at + env.delay_s if env.delay_s > 0 else None,
                idempotency_key=key,
            )
            if key is not None:
                seen[key] = msg
            fresh.append(msg)
            out.append(Published(msg, created=True))
        if len(fresh) > q.room():
            raise QueueFull(
                f"queue {queue!r} holds {q.waiting()} of {q.settings.max_size} waiting messages; "
                f"{len(fresh)} more do not fit",
                retry_after=1,
            )
        # Hold the capacity and the keys before any await, so concurrent publishes see them.
        for msg in fresh:
            self._messages[msg.id] = msg
            q.status_counts[msg.status] += 1
            if msg.idempotency_key is not None:
                q.idempotency[msg.idempotency_key] = msg.id
        if self._journal is not None and fresh:
            # Run to the end even if the caller goes away: the rows may be committing.
            await _to_the_end(self._commit_publish(q, fresh, created_at))
        else:
            self._land(q, fresh, created_at)
        return out

    async def _commit_publish(self, q: LocalQueue, fresh: list[Message], created_at: float) -> None:
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
        self._land(q, fresh, created_at)

    def _land(self, q: LocalQueue, fresh: list[Message], created_at: float) -> None:
        q.counts.published += len(fresh)
        for msg in fresh:
            if msg.status is Status.QUEUED:
                msg.enqueued_at = created_at
                q.push(msg, next(self._seq))
            else:
                self._schedule(msg)
            self._emit(msg)

    def _by_key(self, q: LocalQueue, key: str) -> Message | None:
        mid = q.idempotency.get(key)
        return self._messages.get(mid) if mid is not None else None

    # ------------------------------------------------------------------ reading
    async def get(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    async def wait(self, message_id: str, timeout: float) -> Message | None:
        msg = self._messages.get(message_id)
        if msg is None or msg.status.final:
            return msg
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(message_id, [])
        waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop(message_id, None)
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

    # ------------------------------------------------------------------ consuming
    async def take(self, queue: str) -> Message:
        q = self.queue(queue)
        while True:
            if q.paused:
                await q.unpaused.wait()
            entry = await q.ready.get()
            msg = self._messages.get(entry[2])
            if msg is None or msg.status is not Status.QUEUED:
                continue  # cancelled while waiting: a tombstone
            if q.paused:
                q.ready.put_nowait(entry)  # paused while we waited: give it back, same place
                continue
            msg.attempts += 1
            msg.started_at = self._clock()
            self._transition(q, msg, Status.RUNNING)
            if self._journal is not None:
                # Commit "running" first: if the process dies now, the attempt still counts.
                try:
                    await self._journal.write([msg])
                except Exception:
                    # Not committed: the attempt never started. Back to the front, as it was.
                    msg.attempts -= 1
                    msg.started_at = None
                    self._transition(q, msg, Status.QUEUED)
                    q.ready.put_nowait((-msg.priority, next(q.front_seq), msg.id))
                    raise
            return msg

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        q = self.queue(message.queue)
        message.finished_at = self._clock()
        if isinstance(outcome, Succeeded):
            message.result, message.error = outcome.result, None
            self._transition(q, message, Status.SUCCEEDED)
            q.counts.succeeded += 1
            label = "succeeded"
        else:
            assert isinstance(outcome, Failed)
            message.error = outcome.error
            message.failures += 1
            if message.failures <= q.settings.max_retries:
                message.scheduled_for = message.finished_at + self._backoff(
                    q.settings, message.failures
                )
                self._transition(q, message, Status.RETRYING)
                self._schedule(message)
                q.counts.retried += 1
                label = "retried"
            else:
                self._transition(q, message, Status.FAILED)
                q.counts.failed += 1
                label = "failed"
        if self._journal is not None:
            await self._journal.write([message])
        return Finished(message, label)

    async def interrupt(self, message: Message) -> None:
        q = self.queue(message.queue)
        message.started_at = None
        self._transition(q, message, Status.QUEUED)
        q.ready.put_nowait((-message.priority, next(q.front_seq), message.id))
        if self._journal is not None:
            await self._journal.write([message])

    def _backoff(self, settings: QueueSettings, failures: int) -> float:
        """Exponential backoff with full jitter (AWS's 'full jitter'), capped."""
        ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (failures - 1))
        return self._rng.uniform(0, ceiling)

    # ------------------------------------------------------------------ operator actions
    async def cancel(self, message_id: str) -> Message:
        msg = self._messages.get(message_id)
        if msg is None:
            raise NotFound(f"message {message_id!r} is not known")
        if not msg.status.cancellable:
            raise Conflict(f"message {message_id!r} is {msg.status.value}; it cannot be cancelled")
        finished_at = self._clock()
        if self._journal is not None:
            await _to_the_end(self._commit_cancel(msg, finished_at))
        q = self.queue(msg.queue)
        msg.finished_at = finished_at
        self._transition(q, msg, Status.CANCELLED)  # its heap entries become tombstones
        q.counts.cancelled += 1
        return msg

    async def _commit_cancel(self, msg: Message, finished_at: float) -> None:
        """Committed before it takes effect, so a failed write leaves the message as it was."""
        assert self._journal is not None
        cancelled = dataclasses.replace(msg, status=Status.CANCELLED, finished_at=finished_at)
        await self._journal.write([cancelled])
        if not msg.status.cancellable:  # taken while the commit ran; its own write follows
            raise Conflict(f"message {msg.id!r} is {msg.status.value}; it cannot be cancelled")

    async def pause(self, queue: str) -> QueueStats:
        q = self.queue(queue)
        was_paused = q.paused
        q.unpaused.clear()
        await self._persist_paused(q, was_paused)
        return q.stats()

    async def resume(self, queue: str) -> QueueStats:
        q = self.queue(queue)
        was_paused = q.paused
        q.unpaused.set()
        await self._persist_paused(q, was_paused)
        return q.stats()

    async def _persist_paused(self, q: LocalQueue, was_paused: bool) -> None:
        if self._journal is None:
            return
        try:
            await self._journal.set_paused([o.name for o in self._queues.values() if o.paused])
        except Exception:
            if was_paused != q.paused:  # not committed: as it was
                (q.unpaused.clear if was_paused else q.unpaused.set)()
            raise

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven:
        q = self.queue(queue)
        wanted = list(q.dead) if ids is None else list(dict.fromkeys(ids))
        chosen = [i for i in wanted if i in q.dead]
        skipped = [i for i in wanted if i not in q.dead]
        if len(chosen) > q.room():
            raise QueueFull(
                f"queue {queue!r} has room for {q.room()} messages; {len(chosen)} dead letters "
                "do not fit",
                retry_after=1,
            )
        msgs = [self._messages[i] for i in chosen]
        if self._journal is not None and msgs:
            moved = await _to_the_end(self._commit_redrive(q, msgs))
        else:
            moved = self._apply_redrive(q, msgs, msgs)
        return Redriven(moved, skipped)

    async def _commit_redrive(self, q: LocalQueue, msgs: list[Message]) -> int:
        """Committed before it takes effect, so a failed write leaves the dead letters dead."""
        assert self._journal is not None
        fresh = [_redriven(m, self._clock()) for m in msgs]
        q.status_counts[Status.QUEUED] += len(msgs)  # hold the room while the commit runs
        try:
            await self._journal.write(fresh)
        finally:
            q.status_counts[Status.QUEUED] -= len(msgs)
        return self._apply_redrive(q, msgs, fresh)

    def _apply_redrive(self, q: LocalQueue, msgs: list[Message], fresh: list[Message]) -> int:
        moved = 0
        for msg, new in zip(msgs, fresh, strict=True):
            if msg.id not in q.dead:
                continue  # redriven or trimmed by someone else meanwhile
            del q.dead[msg.id]
            if new is not msg:
                for name in Message.__slots__:
                    setattr(msg, name, getattr(new, name))
            else:
                _reset_for_redrive(msg, self._clock())
            q.status_counts[Status.QUEUED] += 1
            q.push(msg, next(self._seq))
            self._emit(msg)
            moved += 1
        return moved

    # ------------------------------------------------------------------ internals
    def _transition(self, q: LocalQueue, msg: Message, status: Status) -> None:
        q.status_counts[msg.status] -= 1
        msg.status = status
        if status is Status.FAILED:
            q.dead[msg.id] = None
            self._trim_dead(q)
        else:
            q.status_counts[status] += 1
            if status.final:
                self._finals[msg.id] = None
                self._trim_finals()
        if status.final:
            for fut in self._waiters.pop(msg.id, ()):
                if not fut.done():
                    fut.set_result(None)
        self._emit(msg)

    def _emit(self, msg: Message) -> None:
        for listener in self._listeners:
            listener(msg)

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
            q.push(msg, next(self._seq))

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


def _redriven(msg: Message, at: float) -> Message:
    new = dataclasses.replace(msg)
    _reset_for_redrive(new, at)
    return new


def _reset_for_redrive(msg: Message, at: float) -> None:
    """Redrive: attempts start again from 0 (SPEC), as if just published."""
    msg.attempts = msg.failures = 0
    msg.result = msg.error = msg.started_at = msg.finished_at = None
    msg.scheduled_for = None
    msg.status = Status.QUEUED
    msg.enqueued_at = at


async def _to_the_end(work: Coroutine[Any, Any, _T]) -> _T:
    """Await `work` in its own task, shielded: if the caller is cancelled (a client went
    away), a commit already handed to the journal still lands or rolls back in full."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the caller may be gone: mark the outcome as seen


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("journal cleanup failed", exc_info=task.exception())
