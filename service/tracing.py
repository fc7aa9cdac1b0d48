"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and
`tracestate` a publish request brings, kept with its messages, and each attempt's own span.

The standard library and msgspec only: OpenTelemetry is optional (service/otel.py, imported
by otel_setup.py only when it is configured), and a message without a trace costs one
`is None` test per attempt.
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, Protocol, TypeVar

import msgspec

log = logging.getLogger(__name__)

# version-trace_id-parent_id-flags, lower-case hex only. A later version may add fields
# after the flags (behind a dash); version 00 has none.
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
# W3C allows 32 list members of at most 256 characters each; a longer header may be
# dropped. Printable ASCII only: a header that is not is ignored, never stored.
MAX_TRACESTATE = 512
_TRACESTATE: Final = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class Incoming:
    """The trace context a publish request brings, validated: a version 00 traceparent."""

    traceparent: str
    tracestate: str | None = None


class TraceView(msgspec.Struct, omit_defaults=True, gc=False):
    """The W3C Trace Context the message was published in (the publish span's, with the
    `otel` extra): the `trace` of a message's JSON."""

    traceparent: str
    tracestate: str | None = None


def incoming(traceparent: str | None, tracestate: str | None) -> Incoming | None:
    """The request's trace context, or None when it has no valid traceparent: W3C says an
    invalid one is ignored (the publish goes on, as a new trace), never refused."""
    if not traceparent:
        return None
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    return Incoming(parent, valid_tracestate(tracestate))


def parse_traceparent(value: str) -> str | None:
    """The traceparent as version 00, or None when W3C says to ignore it."""
    value = value.strip(" \t")
    found = _TRACEPARENT.match(value)
    if found is None:
        return None
    version, trace_id, parent_id, flags = found.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    rest = value[found.end() :]
    if version == "00" and rest:
        return None
    if rest and not rest.startswith("-"):
        return None
    # A later version is read as far as version 00 goes, and passed on as version 00
    # (only the sampled bit of its flags is known).
    if version != "00":
        flags = f"{int(flags, 16) & 1:02x}"
    return f"00-{trace_id}-{parent_id}-{flags}"


def valid_tracestate(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip(" \t")
    if not value or len(value) > MAX_TRACESTATE or not _TRACESTATE.fullmatch(value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class Trace:
    """An attempt's place in its trace, as the handler gets it in `ctx.trace`.

    `traceparent` names the attempt's own span: a handler that calls on (an HTTP request, a
    publish of its own) sends it, so the next service's spans are children of the attempt.
    Picklable, for process workers."""

    trace_id: str
    span_id: str  # the attempt's
    parent_id: str  # the span that published the message
    sampled: bool
    traceparent: str
    tracestate: str | None = None


def attempt_trace(traceparent: str, tracestate: str | None, span_id: str | None = None) -> Trace:
    """A new span (a random id, or the given one) under the message's stored traceparent."""
    _, trace_id, parent_id, flags = traceparent.split("-")
    # random, as OpenTelemetry's SDK makes its ids: no system call per attempt (os.urandom's
    # cost a traced thread handler's attempt a tenth more); never all zero, which W3C forbids.
    span = span_id or f"{random.getrandbits(64) or 1:016x}"
    return Trace(
        trace_id,
        span,
        parent_id,
        bool(int(flags, 16) & 1),
        f"00-{trace_id}-{span}-{flags}",
        tracestate,
    )


# The trace of the attempt running in this context: the log formatters (logs.py) add its ids
# to every line. A task copies its context when created, and the executor runs a traced
# thread handler in a copy too.
CURRENT: Final[contextvars.ContextVar[Trace | None]] = contextvars.ContextVar(
    "spool_trace", default=None
)


_T = TypeVar("_T")


def in_trace(call: Callable[[], _T], trace: Trace | None) -> Callable[[], _T]:
    """`call` as is without a trace; with one, run in a copy of this context, so the thread
    it runs on logs with the attempt's trace (and keeps its OpenTelemetry span current)."""
    return call if trace is None else partial(contextvars.copy_context().run, call)


class Spans(Protocol):
    """Where publishes and attempts become spans (service/otel.py). Absent, as it is without
    the `otel` extra or its configuration, a trace is only passed on."""

    def publish(self, queue: str, given: Incoming | None, count: int) -> PublishSpan: ...

    def attempt(
        self, queue: str, message_id: str, attempt: int, carried: Incoming
    ) -> AttemptSpan: ...

    def shutdown(self) -> None: ...


class PublishSpan(Protocol):
    """An open "publish QUEUE" span: its context is what the messages carry."""

    carried: Incoming | None

    def end(self, error: BaseException | None) -> None: ...


class AttemptSpan(Protocol):
    """An open "process QUEUE" span, current in the context it was opened in."""

    trace: Trace

    def end(self, error: str | None) -> None: ...
