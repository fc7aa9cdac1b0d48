"""The wait and processing times of the live view's `event: queues`: a short window of
samples per queue, and its p50/p95."""

from __future__ import annotations

from collections import deque

from .bodies import Percentiles

LATENCY_WINDOW_S = 300.0  # p50/p95 over the last five minutes…
LATENCY_SAMPLES = 1024  # …and at most this many samples per queue and kind


class LatencyWindow:
    """Recent samples (seconds) with their time: percentiles of the last LATENCY_WINDOW_S."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)

    def add(self, when: float, value: float) -> None:
        self._samples.append((when, max(0.0, value)))

    def percentiles(self, current: float) -> Percentiles:
        cutoff = current - LATENCY_WINDOW_S
        values = sorted(v for t, v in self._samples if t >= cutoff)
        if not values:
            return Percentiles(None, None)
        return Percentiles(_rank(values, 0.50), _rank(values, 0.95))


def _rank(values: list[float], q: float) -> float:
    """Nearest-rank percentile, rounded to the microsecond."""
    index = min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))
    return round(values[index], 6)
