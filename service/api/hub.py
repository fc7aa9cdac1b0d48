"""The hub behind the live view: one per app, it listens to the broker (broker.listen) and
fans every transition out to the open event streams, each through its own bounded buffer. A
client that reads too slowly fills its buffer and is dropped, so no client can make the
service hold more memory. It also keeps a short window of wait and processing times per
queue, for the p50/p95 figures of `event: queues`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, is_not
from typing import Any

from .. import __version__
from ..model import Message, Status
from ..runtime import Runtime
from .queues import figures as queue_figures

CLIENT_BUFFER = 1000  # message events one stream may have waiting before it is dropped
SNAPSHOT_TTL_S = 0.5  # streams opened together share one computation of the figures
LATENCY_WINDOW_S = 300.0  # p50/p95 over the last five minutes…
LATENCY_SAMPLES = 1024  # …and at most this many samples per queue and kind
_ATTEMPT_ENDS = frozenset({Status.SUCCEEDED, Status.RETRYING, Status.FAILED})
_RUNNING = Status.RUNNING
_started_at = attrgetter("started_at")


class LatencyWindow:
    """Recent samples (seconds) with their time: percentiles of the last LATENCY_WINDOW_S."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)

    def add(self, when: float, value: float) -> None:
        self._samples.append((when, max(0.0, value)))

    def percentiles(self, current: float) -> dict[str, float | None]:
        cutoff = current - LATENCY_WINDOW_S
        values = sorted(v for t, v in self._samples if t >= cutoff)
        if not values:
            return {"p50": None, "p95": None}
        return {"p50": _rank(values, 0.50), "p95": _rank(values, 0.95)}


def _rank(values: list[float], q: float) -> float:
    """Nearest-rank percentile, rounded to the microsecond."""
    index = min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))
    return round(values[index], 6)


@dataclass(eq=False)
class Subscription:
    queues: frozenset[str] | None  # None: every queue
    buffer: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(CLIENT_BUFFER)
    )
    dropped: bool = False


class EventHub:
    """Fans broker transitions out to the open streams; measures wait and processing time."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._subs: set[Subscription] = set()
        self._wait = {name: LatencyWindow() for name in rt.settings.queues}
        self._processing = {name: LatencyWindow() for name in rt.settings.queues}
        self._stop_listening: Callable[[], None] | None = None
        self._snapshot: tuple[float, dict[str, Any]] | None = None
        self._snapshot_lock = asyncio.Lock()
        self.dropped_total = 0

    async def attach(self) -> None:
        if self._stop_listening is None:
            self._stop_listening = self._rt.broker.listen(self._on_changes)

    async def detach(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, queues: Iterable[str] | None) -> Subscription:
        sub = Subscription(frozenset(queues) if queues is not None else None)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def _on_changes(self, msgs: Sequence[Message]) -> None:
        """Called by the broker on every transition: must be quick and must never raise."""
        # Only attempts are timed, and a published batch has none: skipped in one C step.
        if any(map(is_not, map(_started_at, msgs), repeat(None))):
            for msg in msgs:
                self._measure(msg)
        if not self._subs:
            return
        for msg in msgs:
            self._fan_out(msg)

    def _fan_out(self, msg: Message) -> None:
        event: dict[str, Any] = {
            "id": msg.id,
            "queue": msg.queue,
            "status": msg.status.value,
            "attempts": msg.attempts,
        }
        for sub in list(self._subs):
            if sub.queues is not None and msg.queue not in sub.queues:
                continue
            try:
                sub.buffer.put_nowait(event)
            except asyncio.QueueFull:
                # A client this far behind is dropped rather than buffered without bound.
                sub.dropped = True
                self._subs.discard(sub)
                self.dropped_total += 1

    def _measure(self, msg: Message) -> None:
        status, started = msg.status, msg.started_at
        if started is None:
            return  # published, scheduled or given back: nothing to time (most calls)
        if status is _RUNNING:
            enqueued = msg.enqueued_at
            wait = self._wait.get(msg.queue)
            if wait is not None and enqueued is not None:
                wait.add(time.time(), started - enqueued)
        elif status in _ATTEMPT_ENDS:
            ended = msg.finished_at
            processing = self._processing.get(msg.queue)
            if processing is not None and ended is not None:
                processing.add(time.time(), ended - started)

    async def snapshot(self) -> dict[str, Any]:
        """Every queue's figures with latency, and the node's: computed at most every 0.5 s."""
        async with self._snapshot_lock:
            current = time.monotonic()
            if self._snapshot is not None and current - self._snapshot[0] < SNAPSHOT_TTL_S:
                return self._snapshot[1]
            now_s = time.time()
            rt = self._rt
            queues = []
            for name in self._rt.settings.queues:
                figures = queue_figures(await rt.broker.stats(name), rt.live_consumers(name))
                figures["latency"] = {
                    "wait_s": self._wait[name].percentiles(now_s),
                    "processing_s": self._processing[name].percentiles(now_s),
                }
                queues.append(figures)
            doc = {"queues": queues, "node": node_figures(self._rt)}
            self._snapshot = (current, doc)
            return doc


def node_figures(rt: Runtime) -> dict[str, Any]:
    executor = rt.settings.executor
    return {
        "version": __version__,
        "backend": rt.settings.broker.backend,
        "draining": rt.draining,
        "running": rt.running,
        "loop_lag_ms": round(rt.loop_lag_s * 1000, 3),
        "max_loop_lag_ms": rt.settings.health.max_loop_lag_ms,
        "executors": {
            "thread": {"busy": rt.executors.busy.get("thread", 0), "size": executor.threads},
            "process": {"busy": rt.executors.busy.get("process", 0), "size": executor.processes},
        },
    }
