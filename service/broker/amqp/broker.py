"""The amqp backend: the queues live in RabbitMQ, shared by every node; every status change
goes to the `spool.events` stream, which each node materialises (view.py).

- publish: persistent messages on durable queues; the 202 waits for the publisher confirms
  of the message and of its event. A full queue nacks the publish: 429.
- take/finish: prefetch = concurrency; a delivery is acked only after its outcome is
  recorded (the retry or dead-letter copy confirmed, then the event confirmed). A node that
  dies leaves its unacked deliveries to the others; attempts and failures ride in headers
  and in the events, so a message that kills its node counts that as a failed attempt.
- a dropped connection is reopened by run(); meanwhile writes answer 503 and /readyz is 503.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage

from ...config import QueueSettings, ResultsSettings
from ...errors import StartupError, Unavailable, UnknownQueue
from ...model import Envelope, Message, Status, new_id, now
from ..base import (
    DeadPage,
    Finished,
    Listener,
    Outcome,
    Published,
    QueueStats,
    Redriven,
)
from ..records import encode_message
from . import admin, consume, publish, topology
from .consume import Held
from .link import LINK_ERRORS, Link, redact
from .view import Event, View, message_event

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # to reach RabbitMQ and replay the event history at start
PUBLISH_WAIT_S = 2.0  # an API write waits this long for a connection, then answers 503
RECONNECT_MAX_S = 5.0
SYNC_TIMEOUT_S = 2.0


class AmqpBroker:
    def __init__(
        self,
        queues: dict[str, QueueSettings],
        results: ResultsSettings,
        url: str,
        *,
        clock: Callable[[], float] = now,
        rng: random.Random | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self.start_timeout = start_timeout
        self.queues = queues
        self.results = results
        self.url = url
        self.clock = clock
        self.rng = rng or random.Random()
        self.view = View(queues, results, clock)
        self.link: Link | None = None
        self.connected = asyncio.Event()
        self.inbox: dict[str, asyncio.Queue[tuple[Link, AbstractIncomingMessage]]] = {
            name: asyncio.Queue() for name in queues
        }
        self.held: dict[str, Held] = {}
        self.pending_keys: dict[tuple[str, str], Message] = {}  # idempotency keys in flight
        self.tasks: set[asyncio.Task[None]] = set()  # pause/resume from other nodes
        self.figures: dict[str, dict[str, int]] = {n: {} for n in queues}
        self._links = 0
        self._offset: int | str = "first"
        self._marker = ""
        self.syncs: dict[str, asyncio.Future[None]] = {}
        self._caught_up = asyncio.Event()
        self._last_error = ""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        try:
            async with asyncio.timeout(self.start_timeout):
                while True:
                    try:
                        await self._connect()
                        break
                    except aiormq.exceptions.ChannelPreconditionFailed as exc:
                        raise StartupError(
                            f"broker.amqp_url: a queue on {redact(self.url)} was declared with "
                            f"other arguments than this config gives it ({exc}); delete it or "
                            "align max_size / results settings across nodes"
                        ) from None
                    except (*LINK_ERRORS, aiormq.exceptions.AMQPError, OSError) as exc:
                        # e.g. a RabbitMQ still starting: its stream is not up yet
                        self._last_error = str(exc) or type(exc).__name__
                        await asyncio.sleep(1.0)
                # Replay the event history up to now before this node takes any work, so it
                # knows what was cancelled, finished or cut short by a node that died.
                await self._caught_up.wait()
                for name in self.queues:
                    await admin.apply_consuming(self, name)
        except TimeoutError:
            raise StartupError(
                f"broker.amqp_url: RabbitMQ at {redact(self.url)} did not answer within "
                f"{self.start_timeout:g} s ({self._last_error or 'no reply'})"
            ) from None
        await admin.refresh_figures(self)

    async def _connect(self) -> None:
        self._links += 1
        link = await Link.open(self._links, self.url)
        try:
            await link.declare(self.queues, self.results)
            if not self._caught_up.is_set():
                await admin.load_pause_state(self, link)
            await link.consume_events(self._offset, self._on_event)
            for name, qs in self.queues.items():
                await link.open_work(name, qs.concurrency)
                if self._caught_up.is_set() and not self.view.paused[name]:
                    await link.start_consuming(name, self.deliver_to(name, link))
            if not self._caught_up.is_set():
                self._marker = new_id()
                await link.publish(topology.EVENTS, admin.encode_marker(self._marker))
        except BaseException:
            await link.close()
            raise
        self.link = link
        self.connected.set()
        log.info("connected to RabbitMQ at %s", redact(self.url))

    async def run(self) -> None:
        """Keeps the connection (reopened with backoff when it drops) and the figures fresh."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(admin.refresh_loop(self), name="amqp-figures")
            tg.create_task(self._keep_connected(), name="amqp-connection")

    async def _keep_connected(self) -> None:
        backoff = 0.2
        while True:
            link = self.link
            if link is not None:
                await link.closed.wait()
                self._lose(link)
                log.warning("lost the connection to RabbitMQ; reconnecting")
                try:
                    await asyncio.wait_for(link.close(), 5.0)  # when only a channel died
                except Exception:
                    log.debug("closing the old connection failed", exc_info=True)
            try:
                await self._connect()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._last_error = str(exc) or type(exc).__name__
                log.warning("reconnecting to RabbitMQ failed: %s", self._last_error)
                await asyncio.sleep(backoff)
                backoff = min(RECONNECT_MAX_S, backoff * 2)

    def _lose(self, link: Link) -> None:
        if self.link is link:
            self.link = None
            self.connected.clear()
        for inbox in self.inbox.values():  # these deliveries come back through a new link
            while not inbox.empty():
                inbox.get_nowait()

    async def close(self) -> None:
        self.view.release_waiters()
        link, self.link = self.link, None
        self.connected.clear()
        if link is not None:
            try:
                await link.close()  # unacked deliveries go back to RabbitMQ
            except Exception:
                log.warning("closing the RabbitMQ connection failed", exc_info=True)

    def health(self) -> dict[str, object]:
        ok = self.link is not None and self.link.usable
        out: dict[str, object] = {"ok": ok, "url": redact(self.url)}
        if not ok and self._last_error:
            out["error"] = self._last_error
        return out

    def listen(self, listener: Listener) -> Callable[[], None]:
        return self.view.listen(listener)

    async def usable_link(self, wait: float = PUBLISH_WAIT_S) -> Link:
        link = self.link
        if link is None or not link.usable:
            try:
                await asyncio.wait_for(self.connected.wait(), wait)
            except TimeoutError:
                raise Unavailable(
                    f"RabbitMQ at {redact(self.url)} is not reachable; try again shortly",
                    retry_after=1,
                ) from None
            link = self.link
        if link is None:
            raise Unavailable("RabbitMQ is reconnecting; try again shortly", retry_after=1)
        return link

    # ------------------------------------------------------------------ events
    async def _on_event(self, delivery: AbstractIncomingMessage) -> None:
        offset = (delivery.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            self._offset = offset + 1
        try:
            admin.apply_event(self, delivery.body)
        except Exception:
            log.warning("ignoring an event that does not decode", exc_info=True)
        try:
            await delivery.ack()
        except Exception:
            pass

    async def emit(self, msg: Message, ver: int, count: str | None, link: Link) -> None:
        """Records a transition: confirmed on the stream, then applied here at once (before
        the stream brings it back). Never the other way round: a transition this node knew
        but the stream lost would make this node drop a redelivery the others wait for."""
        event = message_event(msg, ver, count)
        await link.publish(topology.EVENTS, admin.encode(event))
        self.view.apply(copy.copy(msg), ver, count)  # a copy: the caller keeps changing msg

    async def sync(self, link: Link, timeout: float = SYNC_TIMEOUT_S) -> None:
        """Returns once this node has applied every event confirmed before the call (a marker
        of its own made the round trip through the stream), or after `timeout`."""
        token = new_id()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.syncs[token] = fut
        try:
            await link.publish(topology.EVENTS, admin.encode_marker(token))
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            log.warning("the events stream lags more than %.1f s behind", timeout)
        finally:
            self.syncs.pop(token, None)

    def apply_pause(self, event: Event) -> None:
        if event.queue in self.view.paused and self.view.paused[event.queue] != event.paused:
            self.view.paused[event.queue] = event.paused
            admin.spawn(self, admin.apply_consuming(self, event.queue))

    # ------------------------------------------------------------------ publishing
    def queue(self, name: str) -> QueueSettings:
        try:
            return self.queues[name]
        except KeyError:
            raise UnknownQueue(f"queue {name!r} is not configured") from None

    async def publish(self, queue: str, envelopes: Sequence[Envelope]) -> list[Published]:
        return await publish.publish(self, queue, envelopes)

    async def send(self, link: Link, msg: Message, gen: int) -> None:
        """Puts a message where it waits: the work queue, or the delay ladder while not due."""
        headers = consume.headers_of(msg, gen)
        body = encode_message(msg)
        remaining = (msg.scheduled_for or 0.0) - self.clock()
        if msg.status in (Status.SCHEDULED, Status.RETRYING) and remaining > topology.DUE_SLACK_S:
            target = topology.wait(msg.queue, topology.next_step(remaining))
        else:
            target = topology.work(msg.queue)
        await link.publish(target, body, priority=msg.priority, headers=headers)

    # ------------------------------------------------------------------ reading
    async def get(self, message_id: str) -> Message | None:
        return self.view.messages.get(message_id)

    async def wait(self, message_id: str, timeout: float) -> Message | None:
        return await self.view.wait(message_id, timeout)

    async def stats(self, queue: str) -> QueueStats:
        self.queue(queue)
        try:
            link = self.link
            if link is not None and link.usable:
                await asyncio.wait_for(admin.refresh_queue(self, link, queue), PUBLISH_WAIT_S)
        except Exception:
            log.debug("fresh figures for %r failed; using the last ones", queue, exc_info=True)
        return self.cached_stats(queue)

    def cached_stats(self, queue: str) -> QueueStats:
        return admin.stats_of(self, queue)

    def queue_names(self) -> list[str]:
        return list(self.queues)

    async def dead(self, queue: str, limit: int, cursor: str | None) -> DeadPage:
        self.queue(queue)
        return self.view.dead_page(queue, limit, cursor)

    # ------------------------------------------------------------------ consuming
    def deliver_to(self, name: str, link: Link) -> Callable[[AbstractIncomingMessage], Any]:
        inbox = self.inbox[name]

        async def deliver(delivery: AbstractIncomingMessage) -> None:
            inbox.put_nowait((link, delivery))

        return deliver

    async def take(self, queue: str) -> Message:
        return await consume.take(self, queue)

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        return await consume.finish(self, message, outcome)

    async def interrupt(self, message: Message) -> None:
        await consume.interrupt(self, message)

    # ------------------------------------------------------------------ operator actions
    async def cancel(self, message_id: str) -> Message:
        return await admin.cancel(self, message_id)

    async def pause(self, queue: str) -> QueueStats:
        return await admin.set_paused(self, queue, True)

    async def resume(self, queue: str) -> QueueStats:
        return await admin.set_paused(self, queue, False)

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven:
        return await admin.redrive(self, queue, ids)


__all__ = ["AmqpBroker"]
