"""What consumers do on the node-local broker: take the next message, record its outcome,
give it back when a graceful stop cuts the attempt short.

Each transition checks its message and edits a draft in one step; without a journal the
draft is the message and the change is applied at once (no await, no task: the memory
backend's hot path), with one the draft is committed and applied only then (`_commit`).
"""

from __future__ import annotations

from functools import partial

from ..model import Message
from .base import Failed, Finished, Outcome, Succeeded
from .local import FAILED, QUEUED, RETRYING, RUNNING, SUCCEEDED, LocalState
from .queues import LocalQueue


class Consuming(LocalState):
    async def take(self, queue: str) -> Message:
        q = self.queue(queue)
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
            started = self._draft(msg)
            started.status = RUNNING
            started.attempts += 1
            started.started_at = self._clock()
            if started is msg:
                self._moved(q, msg, QUEUED)
                return msg
            if self._claims.displace(mid):
                continue  # its cancel is committing; should that fail, it comes back
            # "running" is committed first: if the process dies now, the attempt still
            # counts. Not committed: it never started, and is back at the front.
            apply = partial(self._started, q, msg, started)
            return await self._commit([started], apply, displaced=True)

    def _started(self, q: LocalQueue, msg: Message, started: Message) -> Message:
        self._apply(q, msg, started, QUEUED)
        return msg

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        """Raises (the journal's NotCommitted) with nothing changed when the outcome cannot
        be committed: the message stays `running`, as the journal holds it, and the same
        outcome may be offered again."""
        q = self.queue(message.queue)
        done = self._draft(message)
        done.finished_at = self._clock()
        if isinstance(outcome, Succeeded):
            done.status, done.result, done.error = SUCCEEDED, outcome.result, None
            label = "succeeded"
        else:
            assert isinstance(outcome, Failed)
            done.error = outcome.error
            done.failures += 1
            if done.failures <= q.settings.max_retries:
                backoff = self._backoff(q.settings, done.failures)
                done.status, done.scheduled_for = RETRYING, done.finished_at + backoff
                label = "retried"
            else:
                done.status = FAILED
                label = "failed"
        if done is message:
            self._finished(q, message)
        else:
            await self._commit([done], lambda: self._finished(q, message, done))
        return Finished(message, label)

    def _finished(self, q: LocalQueue, msg: Message, done: Message | None = None) -> None:
        if done is not None:
            self._adopt(msg, done)
        self._moved(q, msg, RUNNING)
        if msg.status is RETRYING:
            self._schedule(msg)

    async def interrupt(self, message: Message) -> None:
        """Raises with nothing changed when the journal cannot commit it: the message stays
        `running`; the journal's last write at stop gives it back (broker close)."""
        q = self.queue(message.queue)
        given_back = self._draft(message)
        given_back.status, given_back.started_at = QUEUED, None
        if given_back is message:
            self._given_back(q, message, given_back)
        else:
            await self._commit([given_back], lambda: self._given_back(q, message, given_back))

    def _given_back(self, q: LocalQueue, msg: Message, given_back: Message) -> None:
        self._apply(q, msg, given_back, RUNNING)
        q.ready.push_front(msg.id, msg.priority)
