"""Runtime.run(): the one TaskGroup that owns consumers, the broker's background work and the
monitors; Runtime._stop(): the whole stop, phase by phase, in one coroutine.

Each part gets only what it uses: a consumer its QueueWork (consumer.py), the metrics a
read-only LiveState (this runtime), the routes the services create_app hands them (app.py).
Nothing below reaches back up to the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from . import grace
from .broker import create_broker, create_schedule_store
from .broker.base import Broker, QueueCounts
from .config import Settings
from .consumer import Attempts, QueueWork, consume
from .executor import Executors
from .handlers.registry import ResolvedHandler, resolve_queue_handlers
from .metrics import Metrics
from .otel_setup import spans_from_environment
from .progress import ProgressDesk
from .ratelimit import RateGate, TokenBucket, parse_rate
from .scheduler import Scheduler
from .tasks import TaskOwner
from .tracing import Spans

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 0.25
DRAIN_POLL_S = 0.05


class Listener(Protocol):
    """The HTTP listener the stop closes last (serving.HttpServer)."""

    async def close(self, grace_s: float) -> None: ...


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        broker: Broker | None = None,
        executors: Executors | None = None,
        tasks: TaskOwner | None = None,
        spans: Spans | None = None,
    ) -> None:
        self.settings = settings
        # OpenTelemetry's spans when OTEL_* asks for them (the `otel` extra), else None.
        self.spans = spans if spans is not None else spans_from_environment()
        # Handlers resolve here, so a bad reference fails the start with one clear line.
        self.handlers: dict[str, ResolvedHandler] = resolve_queue_handlers(settings.queues)
        # Owns the tasks nobody awaits to their end; closed before the broker is.
        self.tasks = tasks if tasks is not None else TaskOwner()  # (empty is falsy)
        self.broker: Broker = broker or create_broker(settings, tasks=self.tasks)
        self.executors = executors or Executors(settings.executor)
        # Its loop is background work like the broker's: cancelled with it at a stop.
        self.scheduler = (
            Scheduler(settings.schedules, self.broker, create_schedule_store(settings, self.broker))
            if settings.schedules
            else None
        )
        self.attempts = Attempts()
        self.ready = asyncio.Event()  # consumers are running
        self.stopped = asyncio.Event()  # everything is persisted and closed
        self.draining = False  # not ready, refusing publishes: read by /readyz and the routes
        self.loop_lag_s = 0.0
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()  # skip (or end) the drain
        self._broker_closed = False
        self._consumers: dict[str, list[asyncio.Task[None]]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._listener: Listener | None = None
        self.metrics = Metrics(settings.queues)
        self.metrics.attach(self, self.executors)

    # ------------------------------------------------------------------ what others read
    @property
    def running(self) -> int:
        """Attempts in progress."""
        return self.attempts.running

    @property
    def ending_unexpectedly(self) -> bool:
        return self.attempts.ending_unexpectedly

    def live_consumers(self, queue: str) -> int:
        return sum(not t.done() for t in self._consumers.get(queue, ()))

    def queue_depth(self, queue: str) -> Mapping[str, int]:
        return self.broker.cached_stats(queue).depth

    def queue_counts(self, queue: str) -> QueueCounts:
        return self.broker.cached_stats(queue).counts

    def health(self) -> dict[str, dict[str, object]]:
        lag_ok = self.loop_lag_s * 1000 < self.settings.health.max_loop_lag_ms
        expected = {n: q.concurrency for n, q in self.settings.queues.items()}
        dead = {n: c - self.live_consumers(n) for n, c in expected.items()}
        return {
            "backend": self.broker.health(),
            "consumers": {
                "ok": self.ready.is_set() and not any(dead.values()),
                "dead": {n: d for n, d in dead.items() if d},
            },
            "draining": {"ok": not self.draining},
            "loop_lag": {"ok": lag_ok, "lag_ms": round(self.loop_lag_s * 1000, 3)},
            "executors": self.executors.health(),
        }

    # ------------------------------------------------------------------ asking for a stop
    def request_stop(self) -> None:
        """First call: drain gracefully. Second call: skip the drain, persist at once."""
        if self.draining:
            log.warning("second stop signal: skipping the drain")
            self._force.set()
        # Not ready and refusing publishes at once (phases 1 and 2), not a loop turn later.
        self.draining = True
        self._stop_requested.set()

    def stop_now(self) -> None:
        """An unexpected end (cli.run_loop): skip the drain, persist what is held, stop."""
        self.attempts.ending_unexpectedly = True
        self.draining = True
        self._force.set()
        self._stop_requested.set()
        # Phase 4 at once, before any other callback runs: an attempt this end cuts short is
        # failed even if its handler (perhaps the cause) has just returned, and the broker's
        # scheduler moves nothing more (a retry that comes due stays `retrying`): what is
        # persisted is what was held when the end came.
        for task in [*self._background, *(t for ts in self._consumers.values() for t in ts)]:
            task.cancel()

    def close_listener_last(self, listener: Listener) -> None:
        """The HTTP listener: the stop closes it once everything else is (cli.serve)."""
        self._listener = listener

    # ------------------------------------------------------------------ the life
    async def run(self) -> None:
        await self.broker.start()
        try:
            if self.scheduler is not None:
                await self.scheduler.start()
            if any(q.mode == "process" for q in self.settings.queues.values()):
                await asyncio.gather(*map(asyncio.wrap_future, self.executors.warm_up()))
            async with asyncio.TaskGroup() as tg:
                self._background = [
                    tg.create_task(self.broker.run(), name="broker"),
                    tg.create_task(self._monitor_loop_lag(), name="loop-lag"),
                ]
                if self.scheduler is not None:
                    self._background.append(tg.create_task(self.scheduler.run(), name="schedules"))
                # One desk for the node's handlers' progress (progress.py), on this loop.
                desk = ProgressDesk(asyncio.get_running_loop(), self.broker.report_progress)
                for name, queue in self.settings.queues.items():
                    work = self._work_of(name, desk)
                    self._consumers[name] = [
                        tg.create_task(consume(work), name=f"consumer:{name}:{i}")
                        for i in range(queue.concurrency)
                    ]
                self.ready.set()
                log.info("consumers started for %d queues", len(self._consumers))
                await self._stop_requested.wait()
                await self._stop()
        finally:
            # A failure ended the TaskGroup (a task raised, or run() was cancelled) before or
            # during the stop: the same stop, without the drain, does what is left of it.
            if not self.stopped.is_set():
                self._force.set()
                await self._stop()

    def _work_of(self, queue: str, desk: ProgressDesk) -> QueueWork:
        settings = self.settings.queues[queue]
        gate = None
        if settings.rate_limit is not None:
            rate = parse_rate(settings.rate_limit)
            burst = settings.rate_limit_burst or rate.default_burst()
            gate = RateGate(
                TokenBucket(rate.per_s, burst),
                self.metrics.queues[queue].throttled,
                rate=rate.per_s,
                burst=burst,
                shared_by=self.broker.sharing_nodes,
            )
        return QueueWork(
            queue=queue,
            settings=self.settings.queues[queue],
            handler=self.handlers[queue],
            metrics=self.metrics.queues[queue],
            broker=self.broker,
            executors=self.executors,
            attempts=self.attempts,
            tasks=self.tasks,
            gate=gate,
            progress=desk,
            spans=self.spans,
        )

    async def _stop(self) -> None:
        """The whole stop, top to bottom (SAQ Worker.stop, aiojobs, Hypercorn worker_serve).
        Every wait is in grace.py; together they stay within graceful_timeout_s + 5 s.

        Run again after a failure cut it short, it does what is left: the phases already
        done find nothing to do, and the broker is closed once (a close that a cancellation
        cut short is not begun again)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.server.graceful_timeout_s
        # 1. Not ready (/readyz 503) and 2. refusing publishes (503): request_stop() set
        #    `draining` when the stop was asked for; a failure that stops us sets it here.
        self.draining = True
        # 3. Running handlers finish and due work is taken, until the deadline (a second
        #    signal, stop_now() or a failure skips it).
        await self._drain(deadline)
        # 4. What still runs is cancelled: each consumer gives its message back, through
        #    the task owner, and ends.
        consumers = [t for ts in self._consumers.values() for t in ts]
        given_back_by = loop.time() + grace.CANCEL_GRACE_S
        await _cancel(consumers, grace.CANCEL_GRACE_S)
        # 5. The owned tasks end: those give-backs, outcomes being recorded, the broker's
        #    commits in flight and amqp consumer changes (create_broker got this owner).
        #    Within the same grace; what is left then is cancelled.
        await self.tasks.close(max(0.0, given_back_by - loop.time()), grace.SETTLE_S)
        #    Then the broker's background work (scheduler, connection), which the
        #    give-backs may have needed, and any consumer cancelled twice above.
        await _cancel([*self._background, *consumers], grace.SETTLE_S)
        try:
            # 6. The broker persists the rest (memory: the snapshot; sqlite: its last
            #    transaction gives back what still runs; amqp: unacked deliveries go back).
            if not self._broker_closed:
                self._broker_closed = True
                await self.broker.close()
        finally:
            # 7. The pools: worker processes are killed, abandoned threads left behind.
            self.executors.shutdown()
            if self.spans is not None:
                self.spans.shutdown()  # the spans not yet exported go now
            # 8. The listener: open connections get their grace, then are cut off.
            if self._listener is not None:
                await self._listener.close(grace.CONNECTION_GRACE_S)
            self.stopped.set()
            log.info("runtime stopped")

    async def _drain(self, deadline: float) -> None:
        if self._force.is_set():
            return
        loop = asyncio.get_running_loop()
        log.info(
            "draining: up to %.1f s for running handlers", self.settings.server.graceful_timeout_s
        )
        while loop.time() < deadline and not self._force.is_set():
            if self.attempts.running == 0 and not self._due_work():
                break
            try:
                await asyncio.wait_for(self._force.wait(), DRAIN_POLL_S)
            except TimeoutError:
                pass

    def _due_work(self) -> bool:
        for name in self.settings.queues:
            stats = self.broker.cached_stats(name)
            if stats.depth.get("queued", 0) and not stats.paused:
                return True
        return False

    async def _monitor_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        histogram = self.metrics.loop_lag
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            lag = max(0.0, loop.time() - before - LAG_INTERVAL_S)
            self.loop_lag_s = lag
            histogram.observe(lag)


async def _cancel(tasks: list[asyncio.Task[None]], grace_s: float) -> None:
    """Cancels `tasks` and waits up to `grace_s` for them; those left are cancelled again.

    A consumer still running then waits only on an owned remainder (TaskOwner.shield):
    cancelled again it ends at once, and the remainder goes on as the owner's.
    """
    for task in tasks:
        task.cancel()
    pending = [t for t in tasks if not t.done()]
    if not pending:
        return
    _, left = await asyncio.wait(pending, timeout=grace_s)
    for task in left:
        task.cancel()
