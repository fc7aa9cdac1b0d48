"""The hub behind the live view: one per app, it listens to the broker (broker.listen) and
fans transitions out to the open event streams. It also keeps a short window of wait and
processing times per queue, for the p50/p95 figures of `event: queues`.

Fan-out is per tick (FLUSH_S), not per transition, so its cost does not grow with the
transitions times the streams: a transition only records the message's latest state
(coalescing: within a tick a message has at most one `event: message`, its latest status;
a client may skip intermediate statuses but always sees the latest). At the tick, each
event is encoded once, and every stream is handed the same bytes (one chunk per set of
queues asked for). A stream that still has more than CLIENT_BUFFER_BYTES untaken when a
tick comes is dropped, so no client can make the service hold more memory; one that takes
no bytes at all is cut off by the connection's send timeout (connections.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import attrgetter, is_not
from typing import Annotated, Any

import msgspec

from .._version import __version__
from ..broker.base import Broker
from ..config import Settings
from ..metrics import ExecutorGauges
from ..model import Message, Progress, ProgressView, Status
from .bodies import ExecutorFigures, Latency, LiveQueueFigures, NodeState, QueuesEvent
from .history import RateHistory
from .latency import LatencyWindow
from .queues import figures as queue_figures
from .services import LiveNode, QueueDirectory

FLUSH_S = 0.1  # message events are gathered and sent this often (one tick)
CLIENT_BUFFER_BYTES = 1 << 20  # encoded events a stream may leave untaken (~10,000 events)
SNAPSHOT_TTL_S = 0.5  # streams opened together share one computation of the figures
_ATTEMPT_ENDS = frozenset({Status.SUCCEEDED, Status.RETRYING, Status.FAILED})
_RUNNING = Status.RUNNING
_started_at = attrgetter("started_at")
_id = attrgetter("id")
_event_fields = attrgetter("queue", "status.value", "attempts")
_encoder = msgspec.json.Encoder()


class MessageEvent(msgspec.Struct):
    """The data of each `event: message` of GET /v1/events: a message's latest status."""

    id: str
    queue: str
    status: Annotated[str, msgspec.Meta(description="a Status")]
    attempts: int


class ProgressEvent(msgspec.Struct):
    """The data of each `event: progress` of GET /v1/events: a running message's latest
    progress report on this node (at most one per message per tick, the latest)."""

    id: str
    queue: str
    progress: ProgressView


def sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"


class Subscription:
    """One stream's side of the hub: the encoded ticks it has not taken yet."""

    __slots__ = ("_chunks", "_ready", "dropped", "queues", "untaken")

    def __init__(self, queues: frozenset[str] | None) -> None:
        self.queues = queues  # None: every queue
        self._chunks: list[bytes] = []
        self.untaken = 0  # bytes in _chunks
        self.dropped = False
        self._ready = asyncio.Event()

    def deliver(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.untaken += len(chunk)
        self._ready.set()

    def drop(self) -> None:
        self.dropped = True
        self._chunks, self.untaken = [], 0  # a stream too far behind gets none of it
        self._ready.set()

    def take(self) -> bytes:
        """Everything delivered since the last take, as one chunk (b"" if nothing)."""
        chunks, self._chunks, self.untaken = self._chunks, [], 0
        self._ready.clear()
        return b"".join(chunks)

    async def wait(self, timeout: float) -> None:
        """Until something is delivered, the subscription is dropped, or `timeout` passes."""
        if self._ready.is_set() or timeout <= 0:
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation that
        # races with the event (the client went away), leaving the stream running unseen.
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            pass


class NodeView:
    """This node as the live view shows it: its queues and its state (the `node` of every
    `event: queues`, and GET /v1/node)."""

    __slots__ = ("_executors", "_settings", "live", "queues")

    def __init__(self, settings: Settings, live: LiveNode, executors: ExecutorGauges) -> None:
        self._settings = settings
        self._executors = executors
        self.live = live
        self.queues = QueueDirectory(settings.queues)

    def state(self) -> NodeState:
        settings, live, busy = self._settings, self.live, self._executors.busy
        executor = settings.executor
        return NodeState(
            version=__version__,
            backend=settings.broker.backend,
            draining=live.draining,
            running=live.running,
            loop_lag_ms=round(live.loop_lag_s * 1000, 3),
            max_loop_lag_ms=settings.health.max_loop_lag_ms,
            executors={
                "thread": ExecutorFigures(busy.get("thread", 0), executor.threads),
                "process": ExecutorFigures(busy.get("process", 0), executor.processes),
            },
        )


class EventHub:
    """Fans broker transitions out to the open streams; measures wait and processing time."""

    def __init__(self, broker: Broker, node: NodeView, *, flush_s: float = FLUSH_S) -> None:
        self._broker = broker
        self.node = node
        self._flush_s = flush_s
        self._subs: set[Subscription] = set()
        self._wait = {name: LatencyWindow() for name in node.queues}
        self._processing = {name: LatencyWindow() for name in node.queues}
        self._stop_listening: Callable[[], None] | None = None
        # message id → (queue, status, attempts), its latest state in this tick
        self._pending: dict[str, tuple[str, str, int]] = {}
        # message id → (queue, its latest progress) in this tick
        self._progress: dict[str, tuple[str, Progress]] = {}
        self._stop_progress: Callable[[], None] | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._snapshot: tuple[float, QueuesEvent, bytes] | None = None
        self._snapshot_lock = asyncio.Lock()
        self.dropped_total = 0
        self.history = RateHistory(broker, node.queues)  # sampled while the app serves

    async def attach(self) -> None:
        if self._stop_listening is None:
            self._loop = asyncio.get_running_loop()
            self._stop_listening = self._broker.listen(self._on_changes)
            self.history.start()
            self._stop_progress = self._broker.listen_progress(self._on_progress)

    async def detach(self) -> None:
        self.history.stop()
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self._stop_progress is not None:
            self._stop_progress()
            self._stop_progress = None
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

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
        if not self._subs or self._loop is None:
            return
        # Each message's latest state, in C loops: a batch has a thousand.
        self._pending.update(zip(map(_id, msgs), map(_event_fields, msgs), strict=True))
        if self._tick is None:
            self._tick = self._loop.call_later(self._flush_s, self.flush)

    def _on_progress(self, msg: Message) -> None:
        """Called by the broker on each progress report that lands (throttled upstream)."""
        if not self._subs or self._loop is None or msg.progress is None:
            return
        self._progress[msg.id] = (msg.queue, msg.progress)
        if self._tick is None:
            self._tick = self._loop.call_later(self._flush_s, self.flush)

    def flush(self) -> None:
        """The tick: encodes the events gathered since the last one, once, and hands every
        stream its chunk; drops streams that left more than CLIENT_BUFFER_BYTES untaken."""
        self._tick = None
        pending, self._pending = self._pending, {}
        progress, self._progress = self._progress, {}
        if not (pending or progress) or not self._subs:
            return
        frames = [
            (queue, sse("message", MessageEvent(mid, queue, status, attempts)))
            for mid, (queue, status, attempts) in pending.items()
        ]
        if progress:
            frames += [
                (queue, sse("progress", ProgressEvent(mid, queue, report.view())))
                for mid, (queue, report) in progress.items()
            ]
        chunks: dict[frozenset[str] | None, bytes] = {}
        for sub in list(self._subs):
            if sub.untaken > CLIENT_BUFFER_BYTES:
                # A client this far behind is dropped rather than buffered without bound.
                sub.drop()
                self._subs.discard(sub)
                self.dropped_total += 1
                continue
            chunk = chunks.get(sub.queues)
            if chunk is None:
                wanted = sub.queues
                chunk = chunks[wanted] = b"".join(
                    [frame for queue, frame in frames if wanted is None or queue in wanted]
                )
            if chunk:
                sub.deliver(chunk)

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

    async def queues_event(self, queues: frozenset[str] | None) -> bytes:
        """`event: queues` for a stream of `queues` (None: all), encoded once per snapshot
        for the streams of every queue."""
        doc, encoded = await self._snapshot_of_figures()
        if queues is None:
            return encoded
        return sse("queues", QueuesEvent([q for q in doc.queues if q.name in queues], doc.node))

    async def _snapshot_of_figures(self) -> tuple[QueuesEvent, bytes]:
        """Every queue's figures with latency, and the node's: computed at most every 0.5 s."""
        async with self._snapshot_lock:
            current = time.monotonic()
            if self._snapshot is not None and current - self._snapshot[0] < SNAPSHOT_TTL_S:
                return self._snapshot[1], self._snapshot[2]
            now_s = time.time()
            node, queues = self.node, []
            for name in node.queues:
                stats = await self._broker.stats(name)
                figures = queue_figures(stats, node.live.live_consumers(name))
                latency = Latency(
                    self._wait[name].percentiles(now_s), self._processing[name].percentiles(now_s)
                )
                queues.append(LiveQueueFigures(**msgspec.structs.asdict(figures), latency=latency))
            doc = QueuesEvent(queues, node.state())
            self._snapshot = (current, doc, sse("queues", doc))
            return doc, self._snapshot[2]
