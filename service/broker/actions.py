"""Operator actions on the node-local broker: cancel, pause / resume, redrive. With a
journal each is committed before it takes effect, so a failed write changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..errors import Conflict, NotFound, QueueFull
from ..model import Message, Status
from .base import (
    QueueStats,
    Redriven,
)
from .journal import to_the_end
from .local import LocalState
from .queues import LocalQueue


class OperatorActions(LocalState):
    async def cancel(self, message_id: str) -> Message:
        msg = self._messages.get(message_id)
        if msg is None:
            raise NotFound(f"message {message_id!r} is not known")
        if not msg.status.cancellable:
            raise Conflict(f"message {message_id!r} is {msg.status.value}; it cannot be cancelled")
        finished_at = self._clock()
        if self._journal is not None:
            await to_the_end(self._commit_cancel(msg, finished_at))
        q = self.queue(msg.queue)
        msg.finished_at = finished_at
        self._transition(q, msg, Status.CANCELLED)  # its heap entries become tombstones
        q.counts.cancelled += 1
        return msg

    async def _commit_cancel(self, msg: Message, finished_at: float) -> None:
        """Committed before it takes effect, so a failed write leaves the message as it was."""
        assert self._journal is not None
        cancelled = msgspec.structs.replace(msg, status=Status.CANCELLED, finished_at=finished_at)
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
            moved = await to_the_end(self._commit_redrive(q, msgs))
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
                for name in Message.__struct_fields__:
                    setattr(msg, name, getattr(new, name))
            else:
                _reset_for_redrive(msg, self._clock())
            q.status_counts[Status.QUEUED] += 1
            q.push(msg)
            self._emit(msg)
            moved += 1
        return moved


def _redriven(msg: Message, at: float) -> Message:
    new = msgspec.structs.replace(msg)
    _reset_for_redrive(new, at)
    return new


def _reset_for_redrive(msg: Message, at: float) -> None:
    """Redrive: attempts start again from 0 (SPEC), as if just published."""
    msg.attempts = msg.failures = 0
    msg.result = msg.error = msg.started_at = msg.finished_at = None
    msg.scheduled_for = None
    msg.status = Status.QUEUED
    msg.enqueued_at = at
