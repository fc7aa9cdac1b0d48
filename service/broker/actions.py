"""Operator actions on the node-local broker: cancel, pause / resume, redrive. With a
journal each is committed before it takes effect, so a failed write changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import Conflict, NotFound, QueueFull
from ..model import Message, Status
from .base import (
    QueueStats,
    Redriven,
)
from .journal import to_the_end
from .local import FAILED, LocalState
from .queues import LocalQueue


class OperatorActions(LocalState):
    async def cancel(self, message_id: str) -> Message:
        while True:
            msg = self._messages.get(message_id)
            if msg is None:
                raise NotFound(f"message {message_id!r} is not known")
            if message_id not in self._claims:
                break
            # A change of it is committing (a take, a retry coming due): answer from what
            # it is once that lands, never from what it was.
            await self._claims.released(message_id)
        if not msg.status.cancellable:
            raise Conflict(f"message {message_id!r} is {msg.status.value}; it cannot be cancelled")
        q = self.queue(msg.queue)
        old = msg.status
        cancelled = self._draft(msg)
        cancelled.status, cancelled.finished_at = Status.CANCELLED, self._clock()
        if cancelled is msg:
            self._apply(q, msg, msg, old)  # its ready or heap entry becomes a tombstone
        else:
            await self._commit([cancelled], lambda: self._apply(q, msg, cancelled, old))
        return msg

    async def pause(self, queue: str) -> QueueStats:
        return await self._set_paused(self.queue(queue), True)

    async def resume(self, queue: str) -> QueueStats:
        return await self._set_paused(self.queue(queue), False)

    async def _set_paused(self, q: LocalQueue, paused: bool) -> QueueStats:
        if self._journal is None:
            self._apply_paused(q, paused)
        else:
            await to_the_end(self._commit_paused(q, paused))
        return q.stats()

    async def _commit_paused(self, q: LocalQueue, paused: bool) -> None:
        assert self._journal is not None
        # One at a time: each commit holds the whole paused set, the earlier changes in it.
        async with self._pausing:
            others = [o.name for o in self._queues.values() if o.paused and o is not q]
            await self._journal.set_paused([*others, q.name] if paused else others)
            self._apply_paused(q, paused)

    @staticmethod
    def _apply_paused(q: LocalQueue, paused: bool) -> None:
        (q.unpaused.clear if paused else q.unpaused.set)()

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven:
        q = self.queue(queue)
        wanted = list(q.dead) if ids is None else list(dict.fromkeys(ids))
        # A dead letter claimed by another redrive or by retention is that one's to move.
        chosen = [i for i in wanted if i in q.dead and i not in self._claims]
        skipped = [i for i in wanted if i not in q.dead or i in self._claims]
        if len(chosen) > q.room():
            raise QueueFull(
                f"queue {queue!r} has room for {q.room()} messages; {len(chosen)} dead letters "
                "do not fit",
                retry_after=1,
            )
        msgs = [self._messages[i] for i in chosen]
        drafts = [self._draft(m) for m in msgs]
        at = self._clock()
        for draft in drafts:
            _reset_for_redrive(draft, at)
        if self._journal is None:
            self._apply_redrive(q, msgs, drafts)
        elif msgs:
            q.reserved += len(msgs)  # their room, held while the commit runs
            await self._commit(
                drafts,
                lambda: self._apply_redrive(q, msgs, drafts, reserved=True),
                undo=lambda: q.unreserve(len(msgs)),
            )
        return Redriven(len(msgs), skipped)

    def _apply_redrive(
        self, q: LocalQueue, msgs: list[Message], drafts: list[Message], *, reserved: bool = False
    ) -> None:
        if reserved:
            q.unreserve(len(msgs))
        for msg, draft in zip(msgs, drafts, strict=True):
            self._apply(q, msg, draft, FAILED)
            q.push(msg)


def _reset_for_redrive(msg: Message, at: float) -> None:
    """Redrive: attempts start again from 0 (SPEC), as if just published."""
    msg.attempts = msg.failures = 0
    msg.result = msg.error = msg.started_at = msg.finished_at = None
    msg.scheduled_for = None
    msg.status = Status.QUEUED
    msg.enqueued_at = at
