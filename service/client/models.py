"""What the API answers, as typed values (unknown fields from newer servers are ignored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

FINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})


class ErrorInfo(msgspec.Struct, frozen=True):
    type: str
    message: str


class Progress(msgspec.Struct, frozen=True):
    """A handler's latest ctx.progress report: fraction 0..1 and its JSON detail."""

    fraction: float
    detail: Any
    at: datetime


class TraceView(msgspec.Struct, frozen=True):
    """The W3C trace context a message was published in."""

    traceparent: str
    tracestate: str | None = None


class Message(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    queue: str
    status: str
    body: Any
    headers: dict[str, str]
    priority: int
    attempts: int
    result: Any
    error: ErrorInfo | None
    created_at: datetime
    scheduled_for: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress | None = None  # servers before progress do not send it
    trace: TraceView | None = None  # a default: servers before traces do not write it
    expires_at: datetime | None = None  # absent from servers before expiry existed

    @property
    def final(self) -> bool:
        return self.status in FINAL


class Depth(msgspec.Struct, frozen=True):
    scheduled: int = 0
    queued: int = 0
    running: int = 0
    retrying: int = 0
    dead: int = 0


class Counts(msgspec.Struct, frozen=True):
    published: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A [schedules.NAME] of the server's config: its last and next run (UTC), paused."""

    name: str
    cron: str
    timezone: str
    queue: str
    priority: int
    catch_up: bool
    paused: bool
    last_run: datetime | None
    next_run: datetime | None


class QueueInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    paused: bool
    consumers: int
    max_size: int
    depth: Depth
    counts: Counts


class DeadPage(msgspec.Struct, frozen=True):
    messages: list[Message]
    next_cursor: str | None = None


class Redriven(msgspec.Struct, frozen=True):
    redriven: int
    skipped: list[str] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One message to publish in a batch. Without `idempotency_key` the client makes one."""

    body: Any
    delay_s: float | None = None
    priority: int | None = None
    idempotency_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    expires_in_s: float | None = None

    def to_json(self, default_key: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"body": self.body, "idempotency_key": self.idempotency_key}
        if doc["idempotency_key"] is None:
            doc["idempotency_key"] = default_key
        if self.delay_s is not None:
            doc["delay_s"] = self.delay_s
        if self.priority is not None:
            doc["priority"] = self.priority
        if self.headers:
            doc["headers"] = dict(self.headers)
        if self.expires_in_s is not None:
            doc["expires_in_s"] = self.expires_in_s
        return doc
