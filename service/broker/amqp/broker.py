"""The amqp backend: the queues live in RabbitMQ, shared by every node; every status change
goes to the `spool.events` stream, which each node materialises (view.py).

- publish: persistent messages on durable queues; the 202 waits for the publisher confirms
  of the message and of its event. A full queue nacks the publish: 429.
- take/finish: prefetch = concurrency; a delivery is acked only after its outcome is
  recorded (the retry or dead-letter copy confirmed, then the event confirmed). A node that
  dies leaves its unacked deliveries to the others; attempts and failures ride in headers
  and in the events, so a message that kills its node counts that as a failed attempt.
- a dropped connection is reopened by run(); meanwhile writes answer 503 and /readyz is 503.

AmqpBroker is the Broker Protocol (base.py) and only composes the parts, each built here
with exactly what it uses; none of them knows the broker:

    NodeState   the current link, connected / caught-up events   (state.py)
    View        what this node knows of every message            (view.py)
    Intake      consuming on/off by pause, the inboxes           (intake.py)
    Stream      the events stream: emit, apply, sync             (stream.py)
    Figures     RabbitMQ's queue depths, the stats               (figures.py)
    Connection  connect, reconnect, close                        (connection.py)
    Publisher   publish                                          (publish.py)
    Deliveries  take, finish, interrupt                          (consume.py)
    Admin       cancel, pause / resume, redrive, expiry sweep    (admin.py)
    Presence    the live nodes, which share each rate limit      (presence.py)
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

from ...config import QueueSettings, ResultsSettings
from ...model import Envelope, Message, Progress, now
from ...tasks import BrokerTasks, TaskOwner
from ...tracing import Incoming
from .. import base
from ..base import (
    DeadPage,
    Finished,
    Listener,
    Outcome,
    ProgressListener,
    Published,
    QueueStats,
)
from .admin import Admin
from .connection import Connection
from .consume import Deliveries
from .figures import Figures
from .intake import Intake
from .link import Link
from .node import Node
from .presence import Presence
from .publish import Publisher
from .state import PUBLISH_WAIT_S, NodeState, queue_settings
from .stream import Stream
from .view import View

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # to reach RabbitMQ and replay the event history at start


class AmqpBroker(base.OperatorActionsOf):
    def __init__(
        self,
        queues: dict[str, QueueSettings],
        results: ResultsSettings,
        url: str,
        *,
        clock: Callable[[], float] = now,
        rng: random.Random | None = None,
        start_timeout: float = START_TIMEOUT_S,
        tasks: TaskOwner | None = None,
    ) -> None:
        self._queues = queues
        # Consumer starts and stops are tasks of `tasks` (the runtime's), which the stop
        # awaits before it closes the broker.
        self._tasks = BrokerTasks(tasks)
        self._start_timeout = start_timeout
        self._state = NodeState(url)
        self._view = View(queues, results, clock)
        self._intake = Intake(queues, self._view, self._state, self._tasks.owner)
        self._presence = Presence(clock)
        self._limited = any(q.rate_limit is not None for q in queues.values())
        self._stream = Stream(
            self._view, self._state, self._intake.follow_pause, self._presence.saw
        )
        self._figures = Figures(queues, self._view)
        self._connection = Connection(url, queues, results, self._state, self._stream, self._intake)
        node = Node(queues, self._state, self._view, self._stream, clock)
        self._publisher = Publisher(node, self._figures)
        self._deliveries = Deliveries(node, self._intake, rng or random.Random())
        self._admin = Admin(node, self._intake, self._figures)
        self.operations = self._admin  # cancel, pause, …

    @property
    def node_state(self) -> NodeState:
        """The current link, shared with the schedules' store (amqp/schedules.py)."""
        return self._state

    @property
    def link(self) -> Link | None:
        """The current connection's link (None while reconnecting)."""
        return self._state.link

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._connection.start(self._start_timeout)
        await self._figures.refresh(self._state.live_link())

    async def run(self) -> None:
        """Keeps the connection (reopened with backoff when it drops) and the figures fresh,
        and sweeps expired messages."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                self._figures.keep_fresh(self._state, self._view.sweep), name="amqp-figures"
            )
            tg.create_task(self._connection.keep(), name="amqp-connection")
            tg.create_task(self._admin.keep_expiring(), name="amqp-expiry")
            if self._limited:
                # Only where a limit is shared: otherwise the stream carries no heartbeats.
                tg.create_task(self._presence.beat(self._state, self._stream), name="amqp-beat")

    async def close(self) -> None:
        self._view.release_waiters()
        await self._tasks.close_own()
        await self._connection.close()

    def health(self) -> dict[str, object]:
        ok = self._state.live_link() is not None
        out: dict[str, object] = {"ok": ok, "url": self._state.shown_url}
        if not ok and self._state.last_error:
            out["error"] = self._state.last_error
        if self._limited:
            out["nodes"] = self._presence.live_nodes()  # those sharing the rate limits
        return out

    def listen(self, listener: Listener) -> Callable[[], None]:
        return self._view.listen(listener)

    def sharing_nodes(self) -> int:
        return self._presence.live_nodes()

    def listen_progress(self, listener: ProgressListener) -> Callable[[], None]:
        return self._view.listen_progress(listener)

    def report_progress(self, message_id: str, attempt: int, progress: Progress) -> bool:
        return self._view.progress(message_id, attempt, progress)

    # ------------------------------------------------------------------ publishing, reading
    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], trace: Incoming | None = None
    ) -> list[Published]:
        return await self._publisher.publish(queue, envelopes, trace)

    async def get(self, message_id: str) -> Message | None:
        return self._view.messages.get(message_id)

    async def wait(
        self, message_id: str, timeout: float, *, progress: bool = False
    ) -> Message | None:
        return await self._view.wait(message_id, timeout, progress)

    async def stats(self, queue: str) -> QueueStats:
        queue_settings(self._queues, queue)
        try:
            link = self._state.live_link()
            if link is not None:
                await asyncio.wait_for(self._figures.refresh_queue(link, queue), PUBLISH_WAIT_S)
        except Exception:
            log.debug("fresh figures for %r failed; using the last ones", queue, exc_info=True)
        return self._figures.stats(queue)

    def cached_stats(self, queue: str) -> QueueStats:
        return self._figures.stats(queue)

    def queue_names(self) -> list[str]:
        return list(self._queues)

    async def dead(self, queue: str, limit: int, cursor: str | None) -> DeadPage:
        queue_settings(self._queues, queue)
        return self._view.dead_page(queue, limit, cursor)

    # ------------------------------------------------------------------ consuming
    async def take(self, queue: str) -> Message:
        return await self._deliveries.take(queue)

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        return await self._deliveries.finish(message, outcome)

    async def interrupt(self, message: Message) -> None:
        await self._deliveries.interrupt(message)


__all__ = ["AmqpBroker"]
