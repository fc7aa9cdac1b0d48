"""Operator actions on the local broker: cancel, pause / resume, redrive. Each goes through
the one rule (commits.py), so where the storage commits, a failed write changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ..errors import NotFound
from ..model import Message
from .base import QueueStats, Redriven
from .policy import check_cancellable, check_room, mark_cancelled, reset_for_redrive
from .queues import LocalQueue
from .state import FAILED, LocalState


class OperatorActions:
    def __init__(self, state: LocalState) -> None:
        self._state = state
        self._commits = state.commits

    async def cancel(self, message_id: str) -> Message:
        claims = self._commits.claims
        while True:
            msg = self._state.messages.get(message_id)
            if msg is None:
                raise NotFound(f"message {message_id!r} is not known")
            if message_id not in claims:
                break
            # A change of it is committing (a take, a retry coming due): answer from what
            # it is once that lands, never from what it was.
            await claims.released(message_id)
        check_cancellable(msg)
        q = self._state.queues[msg.queue]
        old = msg.status
        cancelled = self._commits.draft(msg)
        mark_cancelled(cancelled, self._state.clock())
        # Its ready or heap entry becomes a tombstone, passed over when it comes up.
        committing = self._commits.change_one(cancelled, self._state.moved, q, msg, old, False)
        if committing is not None:
            await committing
        return msg

    async def set_paused(self, queue: str, paused: bool) -> QueueStats:
        q = self._state.queues[queue]

        def paused_after() -> list[str]:
            others = [o.name for o in self._state.queues.values() if o.paused and o is not q]
            return [*others, q.name] if paused else others

        committing = self._commits.change_paused(paused_after, _set_paused, q, paused)
        if committing is not None:
            await committing
        return q.stats()

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven:
        q = self._state.queues[queue]
        claims = self._commits.claims
        wanted = list(q.dead) if ids is None else list(dict.fromkeys(ids))
        # A dead letter claimed by another redrive or by retention is that one's to move.
        chosen = [i for i in wanted if i in q.dead and i not in claims]
        skipped = [i for i in wanted if i not in q.dead or i in claims]
        check_room(
            queue,
            q.waiting(),
            q.settings.max_size,
            len(chosen),
            reserved=q.reserved,
            dead_letters=True,
        )
        msgs = [self._state.messages[i] for i in chosen]
        drafts = [self._commits.draft(m) for m in msgs]
        at = self._state.clock()
        for draft in drafts:
            reset_for_redrive(draft, at)
        q.reserved += len(msgs)  # their room, held while the commit runs
        undo = partial(q.unreserve, len(msgs))
        committing = self._commits.change(drafts, self._redriven, q, msgs, undo=undo)
        if committing is not None:
            await committing
        return Redriven(len(msgs), skipped)

    def _redriven(self, q: LocalQueue, msgs: list[Message]) -> None:
        q.unreserve(len(msgs))
        for msg in msgs:
            self._state.moved(q, msg, FAILED)
            q.push(msg)


def _set_paused(q: LocalQueue, paused: bool) -> None:
    (q.unpaused.clear if paused else q.unpaused.set)()
