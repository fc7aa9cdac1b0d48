"""What one node knows of every message: the `spool.events` stream, materialised.

Every node applies every event (its own at once, the others' as the stream delivers them),
so any node answers GET /v1/messages/{id} and ?wait= for a message published or run on any
other. Events carry a version (redrive generation, attempts, step) and an older version never
overwrites a newer one, so events that arrive out of order across nodes settle the same way
on every node. Final messages are kept by results.ttl_s / max_entries, as on one node.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import Literal

import msgspec

from ...config import ResultsSettings
from ...model import WAITING, Message, Progress, Status
from .. import policy
from ..base import DeadPage, Listener, ProgressListener, QueueCounts
from ..records import decode_message, encode_message
from ..waiters import Waiters

# Steps of one attempt, in the order they happen.
NEW, RUNNING, REQUEUED, FINAL = 0, 1, 2, 3
GEN = 1_000_000_000
# ?wait= on an id this node does not know yet waits this long for its event to arrive.
UNKNOWN_GRACE_S = 2.0


def version(gen: int, turn: int, step: int) -> int:
    return gen * GEN + turn * 10 + step


def turns(msg: Message) -> int:
    """A message's starts so far: its attempts and its snoozes, which take their attempt
    back out of `attempts`; unlike attempts alone, it never goes down within a generation."""
    return msg.attempts + msg.snoozes


class Event(msgspec.Struct, omit_defaults=True):
    kind: Literal["message", "pause", "marker", "dropped", "node"]
    queue: str = ""
    version: int = 0
    record: msgspec.Raw = msgspec.Raw(b"")  # a message record (records.py); empty otherwise
    count: str | None = None  # the counter this transition adds to (published, succeeded…)
    paused: bool = False
    token: str = ""
    at: float = 0.0  # a node's heartbeat: when it was sent (presence.py)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def message_event(msg: Message, ver: int, count: str | None) -> Event:
    return Event("message", msg.queue, ver, msgspec.Raw(encode_message(msg)), count)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    return _decoder.decode(data)


def event_message(event: Event) -> Message:
    return decode_message(bytes(event.record))


class View:
    def __init__(
        self, queues: Iterable[str], results: ResultsSettings, clock: Callable[[], float]
    ) -> None:
        names = list(queues)
        self._results = results
        self._clock = clock
        self.messages: dict[str, Message] = {}
        self.versions: dict[str, int] = {}
        self.counted: dict[str, set[int]] = {}
        self.finals: OrderedDict[str, None] = OrderedDict()
        self.dead: dict[str, dict[str, None]] = {n: {} for n in names}
        self.keys: dict[str, dict[str, str]] = {n: {} for n in names}
        self.status_counts: dict[str, Counter[Status]] = {n: Counter() for n in names}
        self.counts: dict[str, QueueCounts] = {n: QueueCounts() for n in names}
        self.paused: dict[str, bool] = dict.fromkeys(names, False)
        # Cancelled while queued: their copies still sit in RabbitMQ until a consumer meets
        # and drops them, so the queued figure leaves them out.
        self.tombstones: dict[str, set[str]] = {n: set() for n in names}
        self._waiters = Waiters()
        self._listeners: list[Listener] = []
        self._progress_listeners: list[ProgressListener] = []

    # ------------------------------------------------------------------ applying
    def apply(self, msg: Message, ver: int, count: str | None) -> bool:
        """Take in one transition; False when this node already knows a newer one."""
        if msg.queue not in self.dead:
            return False
        if count is not None:
            # Counted once per transition even when a newer one arrived first.
            seen = self.counted.setdefault(msg.id, set())
            if ver not in seen:
                seen.add(ver)
                counts = self.counts[msg.queue]
                setattr(counts, count, getattr(counts, count) + 1)
        old_ver = self.versions.get(msg.id)
        if old_ver is not None and ver <= old_ver:
            return False
        old = self.messages.get(msg.id)
        if old is not None:
            self._unindex(old)
            if (
                old.progress is not None
                and msg.progress is None
                and msg.attempts == old.attempts
                and msg.status is not Status.RUNNING
            ):
                msg.progress = old.progress  # this node's report outlives its attempt's end
            if msg.status is Status.CANCELLED and old.status is Status.QUEUED:
                self.tombstones[msg.queue].add(msg.id)
        self.messages[msg.id] = msg
        self.versions[msg.id] = ver
        self._index(msg)
        if msg.status.final or old is None:
            self._waiters.wake(msg.id)
        for listener in self._listeners:
            listener((msg,))
        return True

    def _index(self, msg: Message) -> None:
        if msg.idempotency_key is not None:
            self.keys[msg.queue][msg.idempotency_key] = msg.id
        if msg.status is Status.FAILED:
            dead = self.dead[msg.queue]
            dead[msg.id] = None
            for mid in policy.over_limit(dead, self._results.max_entries):
                self.drop(mid)
            return
        self.status_counts[msg.queue][msg.status] += 1
        if msg.status.final:
            self.finals[msg.id] = None
            for mid in policy.over_limit(self.finals, self._results.max_entries):
                self.drop(mid)

    def _unindex(self, msg: Message) -> None:
        if msg.status is Status.FAILED:
            self.dead[msg.queue].pop(msg.id, None)
        else:
            self.status_counts[msg.queue][msg.status] -= 1
            self.finals.pop(msg.id, None)

    def drop(self, mid: str) -> None:
        msg = self.messages.pop(mid, None)
        self.versions.pop(mid, None)
        self.counted.pop(mid, None)
        if msg is None:
            return
        self._unindex(msg)
        self.tombstones[msg.queue].discard(mid)
        keys = self.keys[msg.queue]
        if msg.idempotency_key is not None and keys.get(msg.idempotency_key) == mid:
            del keys[msg.idempotency_key]

    def sweep(self) -> None:
        """Forget final messages older than results.ttl_s (dead letters stay, as on one node)."""
        ended = ((mid, self.messages[mid].finished_at) for mid in self.finals)
        for mid in policy.expired(ended, self._clock() - self._results.ttl_s):
            self.drop(mid)

    # ------------------------------------------------------------------ reading
    def by_key(self, queue: str, key: str) -> Message | None:
        mid = self.keys[queue].get(key)
        return self.messages.get(mid) if mid is not None else None

    def waiting(self, queue: str) -> int:
        counts = self.status_counts[queue]
        return sum(counts[s] for s in WAITING)

    def progress(self, message_id: str, attempt: int, progress: Progress) -> bool:
        """A report of a handler running on this node: other nodes never see it (events
        carry records, which leave progress out)."""
        msg = self.messages.get(message_id)
        if msg is None or msg.status is not Status.RUNNING or msg.attempts != attempt:
            return False
        msg.progress = progress
        self._waiters.wake_progress(message_id)
        for listener in self._progress_listeners:
            listener(msg)
        return True

    def listen_progress(self, listener: ProgressListener) -> Callable[[], None]:
        self._progress_listeners.append(listener)
        return lambda: self._progress_listeners.remove(listener)

    async def wait(self, message_id: str, timeout: float, progress: bool = False) -> Message | None:
        msg = self.messages.get(message_id)
        if msg is not None and msg.status.final:
            return msg
        if msg is None:
            # Published on another node a moment ago, its event may still be on its way:
            # wait a little for it before calling it unknown.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            grace = min(timeout, UNKNOWN_GRACE_S)
            if await self._wait_for(message_id, grace) is None:
                return None
            timeout = max(0.0, deadline - loop.time())
        return await self._wait_for(message_id, timeout, progress)

    async def _wait_for(
        self, message_id: str, timeout: float, progress: bool = False
    ) -> Message | None:
        """Waits for the message to be final (or, while unknown, to be known at all; with
        `progress`, also for its next progress report)."""
        msg = self.messages.get(message_id)
        if msg is not None and msg.status.final:
            return msg
        await self._waiters.wait(message_id, timeout, progress=progress)
        return self.messages.get(message_id, msg)

    def release_waiters(self) -> None:
        self._waiters.wake_all()

    def dead_page(self, queue: str, limit: int, cursor: str | None) -> DeadPage:
        ids, next_cursor = policy.dead_page(list(reversed(self.dead[queue])), limit, cursor)
        return DeadPage([self.messages[i] for i in ids], next_cursor)

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)
