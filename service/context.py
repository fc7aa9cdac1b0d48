"""What a handler gets besides the body: its HandlerContext, and the checks of the progress
it reports through it (progress.py carries the reports to the loop)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from .tracing import Trace

# A handler's progress detail, encoded, is at most this large: progress is for a step name
# and a few figures, not results.
MAX_PROGRESS_DETAIL_BYTES = 4096
_encode_detail = msgspec.json.Encoder().encode


def checked_progress(fraction: object, detail: object) -> tuple[float, bytes | None]:
    """(fraction, encoded detail) of a ctx.progress call, or ValueError/TypeError saying
    what is wrong: raised in the handler, where the mistake is."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress fraction: expected a number from 0 to 1, got {fraction!r}")
    value = float(fraction)
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise ValueError(f"progress fraction: expected a number from 0 to 1, got {fraction!r}")
    if detail is None:
        return value, None
    try:
        encoded = _encode_detail(detail)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"progress detail: not JSON ({exc})") from None
    if len(encoded) > MAX_PROGRESS_DETAIL_BYTES:
        raise ValueError(
            f"progress detail: {len(encoded)} bytes of JSON; at most "
            f"{MAX_PROGRESS_DETAIL_BYTES} are kept"
        )
    return value, encoded


class ProgressSink(Protocol):
    """Where a context's progress goes: the node's ProgressDesk (progress.py), or in a
    worker process the pipe back to it."""

    def report(
        self, message_id: str, attempt: int, fraction: float, detail: bytes | None
    ) -> None: ...


_CONTEXT_FIELDS = ("id", "queue", "attempt", "headers", "options", "trace")


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler may know about the message it runs: small, picklable, read-only."""

    id: str
    queue: str
    attempt: int
    headers: Mapping[str, str]
    options: Mapping[str, Any]
    # The attempt's span in the publisher's trace; None when the message came without one.
    trace: Trace | None = None
    # Not pickled: a worker process gets its own sink (calls.py).
    sink: ProgressSink | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, detail: Any = None) -> None:
        """Report how far this attempt got: `fraction` from 0 to 1 and an optional small
        JSON `detail` (at most 4 KiB encoded). Callable from any mode and thread; the latest
        report wins, and at most ten a second reach the server's loop."""
        value, encoded = checked_progress(fraction, detail)
        if self.sink is not None:
            self.sink.report(self.id, self.attempt, value, encoded)

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _CONTEXT_FIELDS)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(_CONTEXT_FIELDS, state, strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "sink", None)
