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
from ...errors import Conflict, NotFound, StartupError, Unavailable, UnknownQueue
from ...model import Envelope, ErrorInfo, Message, Status, new_id, now
from ..base import (
    DeadPage,
    Failed,
    Finished,
    Listener,
    Outcome,
    Published,
    QueueStats,
    Redriven,
    Succeeded,
)
from ..records import decode_message, encode_message
from . import admin, topology
from .link import Link, redact
from .view import FINAL, NEW, REQUEUED, RUNNING, Event, View, message_event, version

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 60.0
PUBLISH_WAIT_S = 2.0  # an API write waits this long for a connection, then answers 503
FINISH_WAIT_S = 10.0  # an outcome waits this long for a connection to be recorded
RECONNECT_MAX_S = 5.0
H_GEN, H_ATTEMPTS, H_FAILURES = "x-spool-gen", "x-spool-attempts", "x-spool-failures"
WORKER_LOST = ErrorInfo("WorkerLost", "the node running this attempt stopped before it ended")
# AMQP errors that mean "the connection or channel is gone", not "RabbitMQ said no".
LINK_ERRORS = (aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError,
               ConnectionError, TimeoutError, RuntimeError)  # fmt: skip


class Held:
    __slots__ = ("delivery", "gen", "link")

    def __init__(self, link: Link, delivery: AbstractIncomingMessage, gen: int) -> None:
        self.link, self.delivery, self.gen = link, delivery, gen


class AmqpBroker:
    def __init__(
        self,
        queues: dict[str, QueueSettings],
        results: ResultsSettings,
        url: str,
        *,
        clock: Callable[[], float] = now,
        rng: random.Random | None = None,
    ) -> None:
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
        self.figures: dict[str, dict[str, int]] = {n: {} for n in queues}
        self._links = 0
        self._offset: int | str = "first"
        self._marker = ""
        self._caught_up = asyncio.Event()
        self._last_error = ""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
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
                    except (*LINK_ERRORS, OSError) as exc:
                        self._last_error = str(exc) or type(exc).__name__
                        await asyncio.sleep(1.0)
                # Replay the event history up to now before this node reports ready.
                await self._caught_up.wait()
        except TimeoutError:
            raise StartupError(
                f"broker.amqp_url: RabbitMQ at {redact(self.url)} did not answer within "
                f"{START_TIMEOUT_S:g} s ({self._last_error or 'no reply'})"
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
                if not self.view.paused[name]:
                    await link.start_consuming(name, self.deliver_to(name, link))
            self._marker = new_id()
            await link.publish(
                topology.EVENTS, admin.encode_marker(self._marker), headers={"x-spool": "marker"}
            )
        except BaseException:
            await link.close()
            raise
        self.link = link
        self.connected.set()
        log.info("connected to RabbitMQ at %s", redact(self.url))

    async def run(self) -> None:
        """Keeps the connection (reopened with backoff when it drops) and the figures fresh."""
        figures = asyncio.create_task(admin.refresh_loop(self))
        try:
            backoff = 0.2
            while True:
                link = self.link
                if link is not None:
                    await link.closed.wait()
                    self._lose(link)
                    log.warning("lost the connection to RabbitMQ; reconnecting")
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
        finally:
            figures.cancel()

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
        return await admin.publish(self, queue, envelopes)

    def make_message(self, queue: str, env: Envelope, created_at: float) -> Message:
        delayed = env.delay_s > 0
        return Message(
            id=new_id(),
            queue=queue,
            status=Status.SCHEDULED if delayed else Status.QUEUED,
            body=bytes(env.body),
            headers=env.headers,
            priority=env.priority,
            created_at=created_at,
            scheduled_for=created_at + env.delay_s if delayed else None,
            idempotency_key=env.idempotency_key,
        )

    async def send(self, link: Link, msg: Message, gen: int) -> None:
        """Puts a message where it waits: the work queue, or the delay ladder while not due."""
        headers = {H_GEN: gen, H_ATTEMPTS: msg.attempts, H_FAILURES: msg.failures}
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
        qs = self.queue(queue)
        inbox = self.inbox[queue]
        while True:
            link, delivery = await inbox.get()
            if not link.usable:
                continue  # stale: RabbitMQ redelivers it through the new link
            try:
                msg = await self._claim(link, qs, delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                if link.usable:  # never leave a delivery unacked on a live channel
                    try:
                        await delivery.nack(requeue=True)
                    except Exception:
                        log.debug("giving a delivery back failed", exc_info=True)
                if link.usable:
                    raise
                continue  # the connection dropped meanwhile: RabbitMQ redelivers it
            if msg is not None:
                return msg

    async def _claim(
        self, link: Link, qs: QueueSettings, delivery: AbstractIncomingMessage
    ) -> Message | None:
        """The delivery as a running message, or None when it is handled here (not due yet,
        cancelled, already final, paused, unreadable)."""
        try:
            msg = decode_message(delivery.body)
        except Exception:
            log.error("dropping an unreadable delivery from %s", delivery.routing_key)
            await delivery.reject(requeue=False)
            return None
        if self.view.paused.get(msg.queue):
            await delivery.nack(requeue=True)
            return None
        headers = delivery.headers or {}
        gen = _int(headers.get(H_GEN))
        msg.attempts = max(msg.attempts, _int(headers.get(H_ATTEMPTS)))
        msg.failures = max(msg.failures, _int(headers.get(H_FAILURES)))
        remaining = (msg.scheduled_for or 0.0) - self.clock()
        if msg.status in (Status.SCHEDULED, Status.RETRYING) and remaining > topology.DUE_SLACK_S:
            await self.send(link, msg, gen)  # the next hop down the delay ladder
            await delivery.ack()
            return None
        known = self.view.messages.get(msg.id)
        known_ver = self.view.versions.get(msg.id, -1)
        if known is not None and known_ver // 1_000_000_000 == gen:
            if known.status.final:
                await delivery.ack()  # cancelled, or its outcome was recorded before the ack
                if msg.id in self.view.tombstones[msg.queue]:
                    self.view.tombstones[msg.queue].discard(msg.id)
                    dropped = Event("dropped", msg.queue, token=msg.id)
                    await link.publish(topology.EVENTS, admin.encode(dropped))
                return None
            msg.attempts = max(msg.attempts, known.attempts)
            msg.failures = max(msg.failures, known.failures)
            if known.status is Status.RUNNING and delivery.redelivered:
                # The node that ran it died (or lost RabbitMQ) before recording the outcome.
                msg.failures += 1
                msg.error = WORKER_LOST
                if msg.failures > qs.max_retries:
                    await self._dead_letter(link, msg, gen)
                    await delivery.ack()
                    return None
        msg.attempts += 1
        msg.status = Status.RUNNING
        msg.started_at = self.clock()
        msg.enqueued_at = msg.scheduled_for or msg.created_at
        msg.finished_at = None
        # Confirmed before the handler starts: if this node dies now, the attempt counts.
        await self.emit(msg, version(gen, msg.attempts, RUNNING), None, link)
        self.held[msg.id] = Held(link, delivery, gen)
        return msg

    async def _dead_letter(self, link: Link, msg: Message, gen: int) -> None:
        msg.status = Status.FAILED
        msg.finished_at = self.clock()
        await self._dead_copy(link, msg, gen)
        await self.emit(msg, version(gen, msg.attempts, FINAL), "failed", link)

    async def _dead_copy(self, link: Link, msg: Message, gen: int) -> None:
        headers = {H_GEN: gen, H_ATTEMPTS: msg.attempts, H_FAILURES: msg.failures}
        await link.publish(topology.dead(msg.queue), encode_message(msg), headers=headers)

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        qs = self.queue(message.queue)
        held = self.held.pop(message.id)
        message.finished_at = self.clock()
        if isinstance(outcome, Succeeded):
            message.result, message.error = outcome.result, None
            message.status, label = Status.SUCCEEDED, "succeeded"
        else:
            assert isinstance(outcome, Failed)
            message.error = outcome.error
            message.failures += 1
            if message.failures <= qs.max_retries:
                message.scheduled_for = message.finished_at + self._backoff(qs, message.failures)
                message.status, label = Status.RETRYING, "retried"
            else:
                message.status, label = Status.FAILED, "failed"
        step = REQUEUED if message.status is Status.RETRYING else FINAL
        ver = version(held.gen, message.attempts, step)
        link = await self.usable_link(FINISH_WAIT_S)
        if link is not held.link:
            # The delivery died with its connection and is redelivered: record a success (so
            # the redelivery is skipped) but leave a retry or dead letter to the redelivery.
            if message.status is Status.SUCCEEDED:
                await self.emit(message, ver, label, link)
            return Finished(message, label)
        if message.status is Status.FAILED:
            await self._dead_copy(link, message, held.gen)
        # The event goes before a retry's copy, so no node can see the next attempt first.
        await self.emit(message, ver, label, link)
        if message.status is Status.RETRYING:
            await self.send(link, message, held.gen)
        await held.delivery.ack()
        return Finished(message, label)

    async def interrupt(self, message: Message) -> None:
        held = self.held.pop(message.id, None)
        message.started_at = None
        message.status = Status.QUEUED
        link = self.link
        if held is None or link is not held.link or not link.usable:
            return
        try:
            await self.emit(message, version(held.gen, message.attempts, REQUEUED), None, link)
            await held.delivery.nack(requeue=True)
        except LINK_ERRORS:
            log.warning("giving back message %s failed; RabbitMQ redelivers it", message.id)

    def _backoff(self, qs: QueueSettings, failures: int) -> float:
        ceiling = min(qs.retry_backoff_max_s, qs.retry_backoff_s * 2 ** (failures - 1))
        return self.rng.uniform(0, ceiling)

    # ------------------------------------------------------------------ operator actions
    async def cancel(self, message_id: str) -> Message:
        known = self.view.messages.get(message_id)
        if known is None:
            raise NotFound(f"message {message_id!r} is not known")
        if not known.status.cancellable:
            raise Conflict(
                f"message {message_id!r} is {known.status.value}; it cannot be cancelled"
            )
        link = await self.usable_link()
        gen = self.view.versions[message_id] // 1_000_000_000
        msg = decode_message(encode_message(known))
        msg.status, msg.finished_at = Status.CANCELLED, self.clock()
        # The copy in RabbitMQ stays until a consumer meets it and drops it (a final status).
        await self.emit(msg, version(gen, msg.attempts, FINAL), "cancelled", link)
        return msg

    async def pause(self, queue: str) -> QueueStats:
        return await admin.set_paused(self, queue, True)

    async def resume(self, queue: str) -> QueueStats:
        return await admin.set_paused(self, queue, False)

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven:
        return await admin.redrive(self, queue, ids)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


__all__ = ["NEW", "AmqpBroker"]
