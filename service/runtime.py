"""Runtime.run(): the one TaskGroup that owns consumers, the broker's background work and the
monitors, and the phases of a graceful stop.

Stop phases (SAQ Worker.stop, arq, aiojobs): not ready and refusing publishes at once →
consumers finish what runs and keep taking due work until the deadline → what still runs is
cancelled and given back as queued → the broker persists the rest → the listener closes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .broker import create_broker
from .broker.base import Broker
from .config import Settings
from .consumer import consume
from .executor import Executors
from .handlers.registry import ResolvedHandler, resolve_queue_handlers
from .metrics import Metrics

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 0.25
DRAIN_POLL_S = 0.05
# After the deadline, cancelled consumers get this long to give their messages back (one
# that is slower leaves its message "running", which the next start runs again). With the
# listener's grace (cli.CONNECTION_GRACE_S) and the stray-task grace, a stop stays within
# graceful_timeout_s + 5 s, as SPEC promises.
CANCEL_GRACE_S = 1.0


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        broker: Broker | None = None,
        executors: Executors | None = None,
    ) -> None:
        self.settings = settings
        # Handlers resolve here, so a bad reference fails the start with one clear line.
        self.handlers: dict[str, ResolvedHandler] = resolve_queue_handlers(settings.queues)
        self.broker: Broker = broker or create_broker(settings)
        self.executors = executors or Executors(settings.executor)
        self.ready = asyncio.Event()  # consumers are running
        self.stopped = asyncio.Event()  # everything is persisted and closed
        self.draining = False
        self.ending_unexpectedly = False  # stop_now(): running attempts count as failed
        self.running = 0  # attempts in progress
        self.loop_lag_s = 0.0
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._consumers: dict[str, list[asyncio.Task[None]]] = {}
        self.metrics = Metrics(settings.queues)
        self.metrics.attach(self)

    def request_stop(self) -> None:
        """First call: drain gracefully. Second call: skip the drain, persist at once."""
        if self.draining:
            log.warning("second stop signal: skipping the drain")
            self._force.set()
        self.draining = True
        self._stop.set()

    def stop_now(self) -> None:
        """An unexpected end (cli.run_loop): skip the drain, persist what is held, stop."""
        self.ending_unexpectedly = True
        self.draining = True
        self._force.set()
        self._stop.set()

    def live_consumers(self, queue: str) -> int:
        return sum(not t.done() for t in self._consumers.get(queue, ()))

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

    async def run(self) -> None:
        await self.broker.start()
        try:
            if any(q.mode == "process" for q in self.settings.queues.values()):
                await asyncio.gather(*map(asyncio.wrap_future, self.executors.warm_up()))
            async with asyncio.TaskGroup() as tg:
                background = [
                    tg.create_task(self.broker.run(), name="broker"),
                    tg.create_task(self._monitor_loop_lag(), name="loop-lag"),
                ]
                for name, queue in self.settings.queues.items():
                    self._consumers[name] = [
                        tg.create_task(consume(self, name), name=f"consumer:{name}:{i}")
                        for i in range(queue.concurrency)
                    ]
                self.ready.set()
                log.info("consumers started for %d queues", len(self._consumers))
                await self._stop.wait()
                await self._drain()
                for task in background:
                    task.cancel()
        finally:
            try:
                await self.broker.close()
            finally:
                self.executors.shutdown()
                self.stopped.set()
                log.info("runtime stopped")

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.server.graceful_timeout_s
        log.info(
            "draining: up to %.1f s for running handlers", self.settings.server.graceful_timeout_s
        )
        while time.monotonic() < deadline and not self._force.is_set():
            if self.running == 0 and not self._due_work():
                break
            try:
                await asyncio.wait_for(self._force.wait(), DRAIN_POLL_S)
            except TimeoutError:
                pass
        tasks = [t for ts in self._consumers.values() for t in ts]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_GRACE_S)

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
