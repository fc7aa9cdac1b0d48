"""Handler progress (ctx.progress) on its way to the loop: throttled, latest wins.

A handler may call ctx.progress in a tight loop, from a worker thread or a worker process.
Each report only replaces the message's pending one under a lock; at most one hand-over per
message reaches the loop every MIN_INTERVAL_S (a thread hands it with call_soon_threadsafe),
so a chatty handler costs the loop ten small calls a second, whatever it does. The attempt's
end lands the latest pending report before its outcome is recorded (`close`).

Nothing is allocated per message unless its handler reports: the desk is one per node, and
its table holds only the messages that reported.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from .model import HandlerContext, Progress

log = logging.getLogger(__name__)

# At most this many hand-overs a second per message reach the loop.
MAX_PER_SECOND = 10
MIN_INTERVAL_S = 1.0 / MAX_PER_SECOND

# Applies one report to the broker's message: False when that message no longer runs that
# attempt (the report came too late), so the desk forgets it.
Apply = Callable[[str, int, Progress], bool]


class _Pending:
    __slots__ = ("attempt", "last", "progress", "scheduled")

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.progress: Progress | None = None
        self.scheduled = False
        self.last = -MIN_INTERVAL_S  # monotonic time of the last hand-over


class ProgressDesk:
    """The node's one ProgressSink (model.py) for threads and the loop alike."""

    def __init__(self, loop: asyncio.AbstractEventLoop, apply: Apply) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._apply = apply
        self._lock = threading.Lock()
        self._open: dict[str, _Pending] = {}
        self.applied = 0  # reports that reached a message (tests bound it)

    def report(self, message_id: str, attempt: int, fraction: float, detail: bytes | None) -> None:
        progress = Progress(fraction, detail, time.time())
        with self._lock:
            pending = self._open.get(message_id)
            if pending is None or pending.attempt != attempt:
                pending = self._open[message_id] = _Pending(attempt)
            pending.progress = progress
            if pending.scheduled:
                return  # a hand-over is on its way and will carry this one: latest wins
            pending.scheduled = True
            delay = max(0.0, pending.last + MIN_INTERVAL_S - time.monotonic())
        if threading.get_ident() == self._loop_thread:
            self._loop.call_later(delay, self._flush, message_id)
            return
        try:
            self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._flush, message_id)
        except RuntimeError:
            pass  # the loop is closed: nobody will read it

    def _flush(self, message_id: str) -> None:
        with self._lock:
            pending = self._open.get(message_id)
            if pending is None:
                return  # closed meanwhile: close() landed the latest
            progress, pending.progress, pending.scheduled = pending.progress, None, False
            pending.last = time.monotonic()
        if progress is not None and not self._land(message_id, pending.attempt, progress):
            with self._lock:
                if self._open.get(message_id) is pending:
                    del self._open[message_id]  # a late report (an abandoned thread's)

    def close(self, message_id: str) -> None:
        """The attempt ended (on the loop): its latest pending report lands now, before the
        outcome, and later reports of it are dropped by the broker."""
        if not self._open:
            return  # the usual message: its handler reported nothing
        with self._lock:
            pending = self._open.pop(message_id, None)
        if pending is not None and pending.progress is not None:
            self._land(message_id, pending.attempt, pending.progress)

    def _land(self, message_id: str, attempt: int, progress: Progress) -> bool:
        landed = self._apply(message_id, attempt, progress)
        self.applied += landed
        return landed


class PipeSink:
    """A worker process's sink: the same throttle, sending to the server over the slot's
    pipe (executor.py reads it on the loop). One handler runs at a time in a worker, so
    what is pending is that attempt's; `flush` sends it as the handler returns."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: tuple[str, int, float, bytes | None] | None = None
        self._last = -MIN_INTERVAL_S
        self._lock = threading.Lock()  # a handler may report from threads of its own

    def report(self, message_id: str, attempt: int, fraction: float, detail: bytes | None) -> None:
        with self._lock:
            self._pending = (message_id, attempt, fraction, detail)
            if time.monotonic() - self._last >= MIN_INTERVAL_S:
                self._send()

    def flush(self) -> None:
        with self._lock:
            self._send()

    def _send(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._conn.send(pending)
            self._last = time.monotonic()


def pipe_reader(conn: Connection, ctx: HandlerContext) -> Callable[[], None]:
    """For loop.add_reader: hands what a worker's PipeSink sent (already throttled there)
    to ctx's sink, the node's desk. Called again as the attempt ends, to read the pipe dry
    (the worker flushes its last report before it returns the result)."""

    def read() -> None:
        try:
            while conn.poll():
                message_id, attempt, fraction, detail = conn.recv()
                if ctx.sink is not None and message_id == ctx.id:
                    ctx.sink.report(message_id, attempt, float(fraction), detail)
        except (EOFError, OSError, ValueError, TypeError) as exc:
            log.debug("progress pipe of a worker: %s", exc)

    return read
