"""The broker Protocol: the one plug point between the API/consumers and where messages live.

Every backend (memory, sqlite, amqp) provides exactly this, and one contract suite in
tests/contract runs against all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from ..model import Envelope, ErrorInfo, Message, Progress
from ..tracing import Incoming

# Called with the messages that changed, in order: a published batch is one call, not a
# thousand (the hub then skips it in one step when no stream is open).
Listener = Callable[[Sequence[Message]], None]
# Called with a running message whose handler reported progress (at most ten a second each).
ProgressListener = Callable[[Message], None]

# The error of an attempt cut short by the death of the process running it (kill -9, OOM,
# a crash): sqlite finds it `running` in the journal at the next start, amqp gets its
# delivery back from RabbitMQ. One object for every backend, so the name clients match on
# is the same whichever backend they run on.
PROCESS_DIED = ErrorInfo("ProcessDied", "the process running this attempt stopped before it ended")


@dataclass(slots=True)
class QueueCounts:
    published: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(slots=True)
class QueueStats:
    name: str
    paused: bool
    max_size: int
    depth: dict[str, int]
    counts: QueueCounts = field(default_factory=QueueCounts)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs the hot path
class Succeeded:
    result: bytes  # the handler's return value, already encoded as JSON


@dataclass(slots=True)  # not frozen: a frozen __init__ costs the hot path
class Failed:
    error: ErrorInfo
    timed_out: bool = False


@dataclass(slots=True)
class Snoozed:
    """The handler asked to run it later (RateLimited): not an attempt, not a failure."""

    retry_after_s: float


Outcome = Succeeded | Failed | Snoozed


class Published(msgspec.Struct, gc=False):
    """One per published message: a Struct built in C, out of the cyclic collector's way."""

    message: Message
    created: bool  # False: an idempotency key repeated and this is the earlier message


@dataclass(slots=True)  # not frozen: a frozen __init__ costs the hot path
class Finished:
    message: Message
    outcome: str  # succeeded | retried | failed | snoozed  (the metric label)


@dataclass(frozen=True, slots=True)
class DeadPage:
    messages: list[Message]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Redriven:
    redriven: int
    skipped: list[str]


class Broker(Protocol):
    """Holds messages, hands them to consumers, records outcomes. Errors are SpoolErrors."""

    async def start(self) -> None:
        """Open storage and recover what a previous run left."""

    async def run(self) -> None:
        """Background work (scheduler, retention, connections) until cancelled."""

    async def close(self) -> None:
        """Persist what is left; called after every consumer has stopped."""

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], trace: Incoming | None = None
    ) -> list[Published]:
        """All or nothing: every envelope is held (committed) or none is (QueueFull...).
        The new messages of one call share one created_at (api/answers.py then writes the
        answer in one step) and the trace context (the publish request's)."""

    async def get(self, message_id: str) -> Message | None: ...

    async def wait(
        self, message_id: str, timeout: float, *, progress: bool = False
    ) -> Message | None:
        """The message once final, or as it is after `timeout` seconds; with `progress`,
        also as soon as its handler reports progress."""

    async def cancel(self, message_id: str) -> Message: ...

    async def take(self, queue: str) -> Message:
        """The next due message, now running with its attempt counted. Honors pause."""

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        """Record an attempt's end: succeeded, retry scheduled, or dead-lettered. Raises
        errors.NotCommitted with nothing changed when the outcome cannot be stored yet: the
        caller may offer the same outcome again."""

    async def interrupt(self, message: Message) -> None:
        """A graceful stop cut the attempt short: back to queued, attempt counted, no failure."""

    async def pause(self, queue: str) -> QueueStats: ...

    async def resume(self, queue: str) -> QueueStats: ...

    async def stats(self, queue: str) -> QueueStats: ...

    def cached_stats(self, queue: str) -> QueueStats:
        """The figures without I/O (exact for local backends, recent for amqp)."""

    def queue_names(self) -> list[str]: ...

    async def dead(self, queue: str, limit: int, cursor: str | None) -> DeadPage: ...

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven: ...

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every status change; returns the function that stops it."""

    def listen_progress(self, listener: ProgressListener) -> Callable[[], None]:
        """Call `listener` on every progress report that lands; returns its stop."""

    def report_progress(self, message_id: str, attempt: int, progress: Progress) -> bool:
        """A handler's progress report (on the loop), shown on its message while that
        attempt runs, on this node only; False when the attempt is no longer running."""

    def health(self) -> dict[str, object]:
        """{'ok': bool, ...}: whether the backend can take writes now."""

    def sharing_nodes(self) -> int:
        """The nodes that share each queue's rate limit (this one included): 1 on one node."""


class Operations(Protocol):
    """What makes the operator actions of a backend (OperatorActions, amqp Admin)."""

    async def cancel(self, message_id: str) -> Message: ...
    async def set_paused(self, queue: str, paused: bool) -> QueueStats: ...
    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven: ...


class OperatorActionsOf:
    """The Broker's operator actions, both backends': made by the backend's `operations`.
    Pause and resume set the queue's one paused flag."""

    operations: Operations

    async def cancel(self, message_id: str) -> Message:
        return await self.operations.cancel(message_id)

    async def pause(self, queue: str) -> QueueStats:
        return await self.operations.set_paused(queue, True)

    async def resume(self, queue: str) -> QueueStats:
        return await self.operations.set_paused(queue, False)

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven:
        return await self.operations.redrive(queue, ids)
