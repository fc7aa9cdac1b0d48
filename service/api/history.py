"""The last five minutes of each queue's counts, one sample a second, so a dashboard opened
now draws full rate charts at once (GET /v1/queues/{queue}/history) instead of only the
time since its tab opened.

A timer on the loop (no task: like the hub's flush tick) reads every queue's counts from
the broker's cached figures, the ones `event: queues` sends, and appends them to a ring of
HISTORY_SAMPLES per queue: memory is bounded by the number of queues, whatever the uptime.
Rates are the differences of consecutive samples over their times (the client's job, so a
sample stays five integers and a time).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable

from ..broker.base import Broker
from ..model import rfc3339
from .bodies import CountsSample, QueueHistory

SAMPLE_S = 1.0  # one sample a second…
HISTORY_SAMPLES = 300  # …for five minutes


class RateHistory:
    """Per queue, a ring of the last HISTORY_SAMPLES samples of its counts."""

    def __init__(self, broker: Broker, queues: Iterable[str]) -> None:
        self._broker = broker
        self._rings: dict[str, deque[tuple[float, int, int, int, int, int]]] = {
            name: deque(maxlen=HISTORY_SAMPLES) for name in queues
        }
        self._timer: asyncio.TimerHandle | None = None
        self._next = 0.0

    def start(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._next = loop.time()
            self._tick(loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.sample()
        finally:
            # On a fixed grid, so a busy loop does not make the samples drift apart; a
            # stall longer than a tick skips the ticks it missed rather than bunching them.
            self._next = max(self._next + SAMPLE_S, loop.time())
            self._timer = loop.call_at(self._next, self._tick, loop)

    def sample(self, now: float | None = None) -> None:
        """Appends every queue's counts now (the timer's call; tests call it directly)."""
        when = time.time() if now is None else now
        for name, ring in self._rings.items():
            c = self._broker.cached_stats(name).counts
            ring.append((when, c.published, c.succeeded, c.retried, c.failed, c.cancelled))

    def of(self, queue: str) -> QueueHistory:
        """The queue's samples, oldest first (the caller checked that the queue exists)."""
        samples = [CountsSample(rfc3339(t), *counts) for t, *counts in self._rings.get(queue, ())]
        return QueueHistory(queue, SAMPLE_S, HISTORY_SAMPLES, samples)
