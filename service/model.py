"""The data that flows: Envelope in, Message through the broker, JSON out."""

from __future__ import annotations

import enum
import math
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Final, NoReturn, overload

import msgspec
import uuid_utils

from .context import HandlerContext as HandlerContext  # handlers import it from here, as ever
from .tracing import Incoming, TraceView


class Status(enum.StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # Enum's own __hash__ is Python code; a StrEnum member hashes as its str, in C. Statuses
    # key the per-queue counters, so this runs several times per message.
    __hash__ = str.__hash__

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def cancellable(self) -> bool:
        return self in (Status.SCHEDULED, Status.QUEUED, Status.RETRYING)


class _NoHeaders(dict[str, str]):
    """The type of NO_HEADERS: an empty dict that refuses every change. A dict, not a
    MappingProxyType, because msgspec encodes dicts (and so their subclasses) natively, and
    writes it `{}` like any empty dict; a proxy would need an enc_hook call per message."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            "NO_HEADERS is shared by every message published without headers: "
            "give the message its own dict instead of changing this one"
        )

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


# The headers of every message published without any, shared by them all (64 bytes less per
# message): a change to it would reach every one, so it refuses changes.
NO_HEADERS: Final[dict[str, str]] = _NoHeaders()

FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
LIVE_DEPTH_STATUSES = (Status.SCHEDULED, Status.QUEUED, Status.RUNNING, Status.RETRYING)
# What counts against max_size: work that is waiting, not work already running.
WAITING = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RETRYING})


# gc=False (here and on the views and Message): decoded JSON holds no cycles, and a batch of
# 1,000 tracked objects would set off the cyclic collector several times per request.
class Envelope(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """One message as a publisher sends it. The body is kept as it was sent: it is never
    re-encoded."""

    body: msgspec.Raw
    delay_s: Annotated[
        float, msgspec.Meta(ge=0, le=366 * 86400, description="seconds before it may run")
    ] = 0.0
    priority: Annotated[
        int, msgspec.Meta(ge=0, le=9, description="higher first; first in, first out within one")
    ] = 0
    idempotency_key: Annotated[
        Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None,
        msgspec.Meta(description="per queue: a repeat answers 200 with the earlier message"),
    ] = None
    headers: Annotated[
        dict[str, str], msgspec.Meta(description="handed to the handler in its context")
    ] = msgspec.field(default_factory=dict)


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    """At most server.max_batch messages: every one is taken, or none is (429 when the queue
    cannot take them all)."""

    messages: list[Envelope]


class RedriveRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The dead letters to put back on the queue, attempts from 0: `ids`, or all of them."""

    ids: list[str] | None = None


class ErrorInfo(msgspec.Struct, frozen=True):
    """A failed attempt: the exception's type name (Timeout, ProcessDied, ...) and message."""

    type: str
    message: str


class Message(msgspec.Struct, eq=False, gc=False):
    """A message as the broker holds it. Body and result are kept as encoded JSON bytes.

    A Struct, not a dataclass: built in C (70 ns against 360 for a slots dataclass's __init__,
    once per published message) and, with gc=False, never scanned by the cyclic collector,
    which otherwise walks every held message at each full collection. Safe because nothing
    a Message holds (str, bytes, floats, a dict of str, a frozen ErrorInfo) can refer back to
    it. Equality is identity (eq=False), as the broker compares messages by id anyway.
    """

    id: str
    queue: str
    status: Status
    body: bytes
    headers: dict[str, str]
    priority: int
    created_at: float
    scheduled_for: float | None = None
    attempts: int = 0
    # Failed attempts only: an attempt cut short by a graceful stop counts in `attempts`
    # but is not a failure, so it cannot push a message into the dead letters.
    failures: int = 0
    result: bytes | None = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    idempotency_key: str | None = None
    enqueued_at: float | None = None
    # Times a handler snoozed it (RateLimited): each such attempt is taken back out of
    # `attempts`, and amqp versions its events by attempts + snoozes, which only grows.
    snoozes: int = 0
    # What the handler last reported of its attempt (ctx.progress): kept in this process
    # only, never in a record (a restart, or another amqp node, does not see it).
    progress: Progress | None = None
    # W3C Trace Context of the publish (tracing.py), version 00; None for most messages.
    traceparent: str | None = None
    tracestate: str | None = None

    def view(self) -> MessageView:
        # Positional (twice as fast as keywords), in MessageView's order, which
        # tests/test_field_order.py pins.
        return MessageView(
            self.id,
            self.queue,
            self.status,  # a StrEnum: encodes as its value
            msgspec.Raw(self.body),
            self.headers,
            self.priority,
            self.attempts,
            None if self.result is None else msgspec.Raw(self.result),
            self.error,
            _rfc3339(self.created_at),
            rfc3339(self.scheduled_for),
            rfc3339(self.started_at),
            rfc3339(self.finished_at),
            None if self.progress is None else self.progress.view(),
            None if self.traceparent is None else TraceView(self.traceparent, self.tracestate),
        )


class Progress(msgspec.Struct, frozen=True, gc=False):
    """A handler's report of how far its attempt got: `detail` is JSON it sent, encoded."""

    fraction: float
    detail: bytes | None
    at: float

    def view(self) -> ProgressView:
        detail = None if self.detail is None else msgspec.Raw(self.detail)
        return ProgressView(self.fraction, detail, _rfc3339(self.at))


class ProgressView(msgspec.Struct, gc=False):
    """The latest progress a handler reported for the running (or last) attempt."""

    fraction: Annotated[float, msgspec.Meta(ge=0, le=1, description="0 to 1")]
    detail: Annotated[
        msgspec.Raw | None, msgspec.Meta(description="the handler's JSON detail, if any")
    ]
    at: Annotated[str, msgspec.Meta(description="when it was reported")]


class MessageView(msgspec.Struct, gc=False):
    """A message as the API shows it. Times are RFC 3339 in UTC, to the millisecond."""

    # Built positionally (Message.view, api/answers.py): tests/test_field_order.py pins it.
    id: Annotated[str, msgspec.Meta(description="unique and time-ordered (UUIDv7)")]
    queue: str
    status: Status
    body: msgspec.Raw
    headers: dict[str, str]
    priority: int
    attempts: Annotated[int, msgspec.Meta(description="every start, the successful one too")]
    result: Annotated[
        msgspec.Raw | None, msgspec.Meta(description="what the handler returned, once succeeded")
    ]
    error: Annotated[ErrorInfo | None, msgspec.Meta(description="the last failure")]
    created_at: str
    scheduled_for: Annotated[str | None, msgspec.Meta(description="when a delay is due")]
    started_at: Annotated[str | None, msgspec.Meta(description="the last attempt's start")]
    finished_at: Annotated[str | None, msgspec.Meta(description="when it became final")]
    progress: Annotated[
        ProgressView | None,
        msgspec.Meta(description="the handler's latest ctx.progress report (this node's)"),
    ]
    trace: Annotated[
        TraceView | None, msgspec.Meta(description="the publish request's trace context")
    ]


def new_message(
    queue: str, env: Envelope, created_at: float, trace: Incoming | None = None
) -> Message:
    """The message an envelope publishes (every broker builds its messages here; the memory
    broker's batch path inlines the undelayed case)."""
    delayed = env.delay_s > 0
    return Message(
        id=new_id(),
        queue=queue,
        status=Status.SCHEDULED if delayed else Status.QUEUED,
        body=bytes(env.body),
        # Most messages have no headers: they share one empty dict (never mutated; a
        # handler's context gets a copy), 64 bytes less per message.
        headers=env.headers or NO_HEADERS,
        priority=env.priority,
        created_at=created_at,
        scheduled_for=created_at + env.delay_s if delayed else None,
        idempotency_key=env.idempotency_key,
        enqueued_at=None if delayed else created_at,
        traceparent=None if trace is None else trace.traceparent,
        tracestate=None if trace is None else trace.tracestate,
    )


def new_id() -> str:
    """UUIDv7: unique and time-ordered, so ids sort by creation."""
    return str(uuid_utils.uuid7())


def now() -> float:
    return time.time()


@overload
def rfc3339(ts: float) -> str: ...


@overload
def rfc3339(ts: float | None) -> str | None: ...


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _rfc3339(ts)


def _rfc3339(ts: float) -> str:
    """What datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds") writes (with
    Z), in under half the time: the date and time to the second come from a small cache,
    since they change once a second, and only the milliseconds are new. The microseconds
    are rounded half to even first, as datetime does."""
    global _last_written
    last = _last_written
    if last[0] == ts:
        return last[1]  # a batch's messages share their created_at: written once for all
    if ts < 0:
        return _slow_rfc3339(ts)
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    text = f"{_to_the_second(second)}.{micros // 1000:03d}Z"
    _last_written = (ts, text)  # one tuple: threads read it whole
    return text


# Module-level, like _to_the_second's cache: memos of pure functions of the time alone, so
# apps side by side share them without leaking anything between them (the census in
# tests/test_field_order.py lists each; test_hot_path.py checks them against datetime).
_last_written: tuple[float, str] = (math.nan, "")  # NaN equals nothing


@lru_cache(maxsize=256)
def _to_the_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _slow_rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
