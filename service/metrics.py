"""Every metric SPEC names, on a registry owned by one runtime (no global state).

Counters and histograms are updated where things happen, through label children bound
once per queue. Gauges that mirror state (depth, consumers, executor busy) are read at
scrape time by a collector, so the hot path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .broker.queues import DEPTH_STATUSES

if TYPE_CHECKING:
    from .runtime import Runtime

# *_created series double the exposition for nothing a dashboard uses.
disable_created_metrics()  # type: ignore[no-untyped-call]

OUTCOMES = ("succeeded", "retried", "failed", "cancelled")
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60)


# Deferred observations reach their histogram at the next scrape, or once this many wait.
FLUSH_AT = 1024


class Deferred:
    """A histogram child whose observe() only appends: the bucket arithmetic and the lock
    happen at scrape time (or every FLUSH_AT values), not once per message on the loop."""

    __slots__ = ("_child", "_pending")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._pending: list[float] = []

    def observe(self, value: float) -> None:
        pending = self._pending
        pending.append(value)
        if len(pending) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        observe = self._child.observe
        for value in pending:
            observe(value)


class QueueMetrics:
    """The label children of one queue, bound once."""

    __slots__ = ("processed", "processing", "published", "timeouts", "wait")

    def __init__(self, metrics: Metrics, queue: str) -> None:
        self.published = metrics.published.labels(queue)
        self.processed = {o: metrics.processed.labels(queue, o) for o in OUTCOMES}
        self.timeouts = metrics.timeouts.labels(queue)
        self.wait = Deferred(metrics.wait.labels(queue))
        self.processing = Deferred(metrics.processing.labels(queue))


class Metrics:
    def __init__(self, queues: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queues: dict[str, QueueMetrics] = {}
        # First in the registry, so every collection sees the deferred observations.
        r.register(FlushDeferred(self))
        self.published = Counter(
            "spool_messages_published", "Messages accepted for a queue.", ["queue"], registry=r
        )
        self.processed = Counter(
            "spool_messages_processed",
            "Attempt ends and cancels, by outcome (succeeded, retried, failed, cancelled).",
            ["queue", "outcome"],
            registry=r,
        )
        self.timeouts = Counter(
            "spool_attempt_timeouts",
            "Attempts that hit the queue's timeout_s.",
            ["queue"],
            registry=r,
        )
        self.wait = Histogram(
            "spool_queue_wait_seconds",
            "Time from queued to running.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.processing = Histogram(
            "spool_processing_seconds",
            "Handler run time per attempt.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "spool_event_loop_lag_seconds",
            "How late the event loop wakes a sleeping task.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "spool_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "spool_http_request_duration_seconds",
            "HTTP request handling time.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.queues = {name: QueueMetrics(self, name) for name in queues}

    def attach(self, runtime: Runtime) -> None:
        self.registry.register(StateCollector(runtime))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class FlushDeferred(Collector):
    """Yields nothing; collecting it moves every deferred observation into its histogram."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        for queue in self._metrics.queues.values():
            queue.wait.flush()
            queue.processing.flush()
        return ()


class StateCollector(Collector):
    """Gauges read from live state at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterable[Metric]:
        rt = self._runtime
        depth = GaugeMetricFamily(
            "spool_queue_depth",
            "Messages by queue and status (dead = dead letters).",
            labels=["queue", "status"],
        )
        consumers = GaugeMetricFamily(
            "spool_consumers", "Live consumer tasks per queue.", labels=["queue"]
        )
        for name in rt.settings.queues:
            stats = rt.broker.cached_stats(name)
            for status in DEPTH_STATUSES:
                depth.add_metric([name, status], stats.depth.get(status, 0))
            consumers.add_metric([name], rt.live_consumers(name))
        yield depth
        yield consumers
        busy = GaugeMetricFamily(
            "spool_executor_busy", "Handlers running in each executor.", labels=["executor"]
        )
        for kind, count in rt.executors.busy.items():
            busy.add_metric([kind], count)
        yield busy
        yield _gauge(
            "spool_executor_abandoned_threads",
            "Handler threads that overran their timeout and still run (they cannot be killed).",
            lambda: rt.executors.abandoned_threads,
        )
        yield _gauge(
            "spool_executor_process_restarts",
            "Worker processes replaced after an overrun or a crash since start.",
            lambda: rt.executors.process_restarts,
        )


def _gauge(name: str, doc: str, read: Callable[[], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], read())
    return family
