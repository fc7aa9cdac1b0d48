"""Every metric SPEC names, on a registry owned by one runtime (no global state).

Counters and histograms are updated where things happen, through label children bound
once per queue, as plain numbers (LightHistogram, LightCounter) rather than
prometheus_client's locked values: they are only ever updated on the loop's thread. Gauges
that mirror state (depth, consumers, executor busy) are read at scrape time by a collector,
so the hot path pays nothing for them.

No prometheus_client Counter or Histogram is used: those write a `*_created` series beside
each one (doubling the exposition for nothing a dashboard uses), and the only way to stop
them, disable_created_metrics(), is process-wide. The families here never write one, so
every app's /metrics is the same whatever else the process has set.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .broker.queues import DEPTH_STATUSES

OUTCOMES = ("succeeded", "retried", "failed", "cancelled")
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60)


Child = TypeVar("Child")


class LightHistogram:
    """One label set's histogram, kept as plain numbers: observe() is a bisect and two
    additions on the loop's thread, with no lock (only the loop observes) and no per-bucket
    objects; LightHistograms turns it into exposition at scrape time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left finds the first bound >= value: Prometheus buckets are "le".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class LightCounter:
    """One label set's counter as a plain int (only the loop's thread adds to it)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class _LightFamily(Collector, Generic[Child]):
    """A metric family whose label children are plain-number objects, made on first use."""

    def __init__(
        self, name: str, doc: str, labels: list[str], new_child: Callable[[], Child]
    ) -> None:
        self._name, self._doc, self._labels, self._new_child = name, doc, labels, new_child
        self._children: dict[tuple[str, ...], Child] = {}

    def labels(self, *values: str) -> Child:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._new_child()
        return child


class LightHistograms(_LightFamily[LightHistogram]):
    """A histogram family whose label children are LightHistograms, exposed like
    prometheus_client's own (same name, type, labels, buckets and formatting)."""

    def __init__(self, name: str, doc: str, labels: list[str], bounds: tuple[float, ...]) -> None:
        super().__init__(name, doc, labels, partial(LightHistogram, bounds))

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labels)
        for values, child in self._children.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*child.bounds, math.inf), child.counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), float(cumulative)))
            family.add_metric(list(values), buckets, child.total)
        yield family


class LightCounters(_LightFamily[LightCounter]):
    """A counter family whose label children are LightCounters."""

    def __init__(self, name: str, doc: str, labels: list[str]) -> None:
        super().__init__(name, doc, labels, LightCounter)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labels)
        for values, child in self._children.items():
            family.add_metric(list(values), child.value)
        yield family


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it (0.005, 1.0, +Inf)."""
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


class QueueMetrics:
    """The label children of one queue, bound once."""

    __slots__ = ("processed", "processing", "published", "snoozed", "throttled", "timeouts", "wait")

    def __init__(self, metrics: Metrics, queue: str) -> None:
        self.published = metrics.published.labels(queue)
        self.processed = {o: metrics.processed.labels(queue, o) for o in OUTCOMES}
        self.timeouts = metrics.timeouts.labels(queue)
        self.wait = metrics.wait.labels(queue)
        self.processing = metrics.processing.labels(queue)
        self.snoozed = metrics.snoozed.labels(queue)
        self.throttled = metrics.rate_limited.labels(queue)


class Metrics:
    def __init__(self, queues: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queues: dict[str, QueueMetrics] = {}
        # Registered in this order, which is the exposition's.
        self.published = LightCounters(
            "spool_messages_published", "Messages accepted for a queue.", ["queue"]
        )
        self.processed = LightCounters(
            "spool_messages_processed",
            "Attempt ends and cancels, by outcome (succeeded, retried, failed, cancelled).",
            ["queue", "outcome"],
        )
        self.timeouts = LightCounters(
            "spool_attempt_timeouts", "Attempts that hit the queue's timeout_s.", ["queue"]
        )
        self.wait = LightHistograms(
            "spool_queue_wait_seconds", "Time from queued to running.", ["queue"], LATENCY_BUCKETS
        )
        self.processing = LightHistograms(
            "spool_processing_seconds", "Handler run time per attempt.", ["queue"], LATENCY_BUCKETS
        )
        self.snoozed = LightCounters(
            "spool_messages_snoozed",
            "Attempts a handler ended with RateLimited: run again later, not counted.",
            ["queue"],
        )
        self.rate_limited = LightCounters(
            "spool_rate_limited",
            "Times a consumer waited for its queue's rate limit before taking a message.",
            ["queue"],
        )
        self.http_requests = LightCounters(
            "spool_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
        )
        self.http_duration = LightHistograms(
            "spool_http_request_duration_seconds",
            "HTTP request handling time.",
            ["method", "route"],
            HTTP_BUCKETS,
        )
        lag = LightHistograms(
            "spool_event_loop_lag_seconds",
            "How late the event loop wakes a sleeping task.",
            [],
            LAG_BUCKETS,
        )
        for family in (
            self.timeouts,
            self.published,
            self.processed,
            self.wait,
            self.processing,
            self.snoozed,
            self.rate_limited,
            self.http_requests,
            self.http_duration,
            lag,
        ):
            r.register(family)
        self.loop_lag = lag.labels()  # no labels: one child, exposed from the start
        self.queues = {name: QueueMetrics(self, name) for name in queues}

    def attach(self, state: LiveState, executors: ExecutorGauges) -> None:
        """Read `state` and `executors` at every scrape, for the gauges."""
        self.registry.register(StateCollector(list(self.queues), state, executors))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LiveState(Protocol):
    """What the queue gauges read at scrape time, read-only (the Runtime provides it)."""

    def queue_depth(self, queue: str) -> Mapping[str, int]:
        """Messages of `queue` by status, without I/O."""

    def live_consumers(self, queue: str) -> int: ...


class ExecutorGauges(Protocol):
    """What the executor gauges read at scrape time (executor.Executors provides it)."""

    @property
    def busy(self) -> Mapping[str, int]: ...

    @property
    def abandoned_threads(self) -> int: ...

    @property
    def process_restarts(self) -> int: ...


class StateCollector(Collector):
    """Gauges read from live state at scrape time."""

    def __init__(self, queues: list[str], state: LiveState, executors: ExecutorGauges) -> None:
        self._queues = queues
        self._state = state
        self._executors = executors

    def collect(self) -> Iterable[Metric]:
        state, executors = self._state, self._executors
        depth = GaugeMetricFamily(
            "spool_queue_depth",
            "Messages by queue and status (dead = dead letters).",
            labels=["queue", "status"],
        )
        consumers = GaugeMetricFamily(
            "spool_consumers", "Live consumer tasks per queue.", labels=["queue"]
        )
        for name in self._queues:
            counts = state.queue_depth(name)
            for status in DEPTH_STATUSES:
                depth.add_metric([name, status], counts.get(status, 0))
            consumers.add_metric([name], state.live_consumers(name))
        yield depth
        yield consumers
        busy = GaugeMetricFamily(
            "spool_executor_busy", "Handlers running in each executor.", labels=["executor"]
        )
        for kind, count in executors.busy.items():
            busy.add_metric([kind], count)
        yield busy
        yield _gauge(
            "spool_executor_abandoned_threads",
            "Handler threads that overran their timeout and still run (they cannot be killed).",
            lambda: executors.abandoned_threads,
        )
        yield _gauge(
            "spool_executor_process_restarts",
            "Worker processes replaced after an overrun or a crash since start.",
            lambda: executors.process_restarts,
        )


def _gauge(name: str, doc: str, read: Callable[[], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], read())
    return family
