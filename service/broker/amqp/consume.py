"""Consuming on the amqp backend: take → (handler runs) → finish, and interrupt.

A delivery is acked only after its outcome is recorded: the retry's copy or the dead letter
confirmed, then the event confirmed on the stream. A redelivered message whose last known
status is `running` was cut short by a node that died: that counts as a failed attempt, so
a message that kills its node cannot loop forever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractIncomingMessage

from ...config import QueueSettings
from ...model import Message, Status
from ..base import PROCESS_DIED, Failed, Finished, Outcome, Succeeded
from ..records import decode_message, encode_message
from . import admin, topology
from .link import LINK_ERRORS, Link
from .view import FINAL, GEN, REQUEUED, RUNNING, Event, version

if TYPE_CHECKING:
    from .broker import AmqpBroker

log = logging.getLogger(__name__)

FINISH_WAIT_S = 10.0  # an outcome waits this long for a connection to be recorded
H_GEN, H_ATTEMPTS, H_FAILURES = "x-spool-gen", "x-spool-attempts", "x-spool-failures"


class Held:
    """A running message's delivery, the link it came by and its redrive generation."""

    __slots__ = ("delivery", "gen", "link")

    def __init__(self, link: Link, delivery: AbstractIncomingMessage, gen: int) -> None:
        self.link, self.delivery, self.gen = link, delivery, gen


def headers_of(msg: Message, gen: int) -> dict[str, int]:
    return {H_GEN: gen, H_ATTEMPTS: msg.attempts, H_FAILURES: msg.failures}


async def take(b: AmqpBroker, queue: str) -> Message:
    qs = b.queue(queue)
    inbox = b.inbox[queue]
    while True:
        link, delivery = await inbox.get()
        if not link.usable:
            continue  # stale: RabbitMQ redelivers it through the new link
        try:
            msg = await claim(b, link, qs, delivery)
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


async def claim(
    b: AmqpBroker, link: Link, qs: QueueSettings, delivery: AbstractIncomingMessage
) -> Message | None:
    """The delivery as a running message, or None when it is handled here (not due yet,
    cancelled, already final, paused, unreadable)."""
    try:
        msg = decode_message(delivery.body)
    except Exception:
        log.error("dropping an unreadable delivery from %s", delivery.routing_key)
        await delivery.reject(requeue=False)
        return None
    if b.view.paused.get(msg.queue):
        await delivery.nack(requeue=True)
        return None
    headers = delivery.headers or {}
    gen = _int(headers.get(H_GEN))
    msg.attempts = max(msg.attempts, _int(headers.get(H_ATTEMPTS)))
    msg.failures = max(msg.failures, _int(headers.get(H_FAILURES)))
    remaining = (msg.scheduled_for or 0.0) - b.clock()
    if msg.status in (Status.SCHEDULED, Status.RETRYING) and remaining > topology.DUE_SLACK_S:
        await b.send(link, msg, gen)  # the next hop down the delay ladder
        await delivery.ack()
        return None
    if msg.status in (Status.SCHEDULED, Status.RETRYING) and remaining > 0:
        # Too close to its due time for another hop, but never started before it: a delay
        # is a promise not to run early (late by a hop's latency is the ladder's cost).
        await asyncio.sleep(remaining)
    known = b.view.messages.get(msg.id)
    if delivery.redelivered and (known is None or known.status is not Status.RUNNING):
        # Its last attempt may have begun on a node that just died: that attempt's event
        # was confirmed before the handler started, so once this node has caught up with
        # the stream it knows.
        await b.sync(link)
        known = b.view.messages.get(msg.id)
    known_ver = b.view.versions.get(msg.id, -1)
    if known is not None and known_ver // GEN == gen:
        if known.status.final:
            await delivery.ack()  # cancelled, or its outcome was recorded before the ack
            if msg.id in b.view.tombstones[msg.queue]:
                b.view.tombstones[msg.queue].discard(msg.id)
                dropped = Event("dropped", msg.queue, token=msg.id)
                await link.publish(topology.EVENTS, admin.encode(dropped))
            return None
        msg.attempts = max(msg.attempts, known.attempts)
        msg.failures = max(msg.failures, known.failures)
        if known.status is Status.RUNNING and delivery.redelivered:
            # The node that ran it died (or lost RabbitMQ) before recording the outcome.
            msg.failures += 1
            msg.error = PROCESS_DIED
            if msg.failures > qs.max_retries:
                await dead_letter(b, link, msg, gen)
                await delivery.ack()
                return None
    msg.attempts += 1
    msg.status = Status.RUNNING
    msg.started_at = b.clock()
    msg.enqueued_at = msg.scheduled_for or msg.created_at
    msg.finished_at = None
    # Confirmed before the handler starts: if this node dies now, the attempt counts.
    await b.emit(msg, version(gen, msg.attempts, RUNNING), None, link)
    b.held[msg.id] = Held(link, delivery, gen)
    return msg


async def dead_letter(b: AmqpBroker, link: Link, msg: Message, gen: int) -> None:
    msg.status = Status.FAILED
    msg.finished_at = b.clock()
    await dead_copy(link, msg, gen)
    await b.emit(msg, version(gen, msg.attempts, FINAL), "failed", link)


async def dead_copy(link: Link, msg: Message, gen: int) -> None:
    await link.publish(topology.dead(msg.queue), encode_message(msg), headers=headers_of(msg, gen))


async def finish(b: AmqpBroker, message: Message, outcome: Outcome) -> Finished:
    qs = b.queue(message.queue)
    held = b.held.pop(message.id)
    message.finished_at = b.clock()
    if isinstance(outcome, Succeeded):
        message.result, message.error = outcome.result, None
        message.status, label = Status.SUCCEEDED, "succeeded"
    else:
        assert isinstance(outcome, Failed)
        message.error = outcome.error
        message.failures += 1
        if message.failures <= qs.max_retries:
            message.scheduled_for = message.finished_at + backoff(b, qs, message.failures)
            message.status, label = Status.RETRYING, "retried"
        else:
            message.status, label = Status.FAILED, "failed"
    step = REQUEUED if message.status is Status.RETRYING else FINAL
    ver = version(held.gen, message.attempts, step)
    link = await b.usable_link(FINISH_WAIT_S)
    if link is not held.link:
        # The delivery died with its connection and is redelivered: record a success (so
        # the redelivery is skipped) but leave a retry or dead letter to the redelivery.
        if message.status is Status.SUCCEEDED:
            await b.emit(message, ver, label, link)
        return Finished(message, label)
    if message.status is Status.FAILED:
        await dead_copy(link, message, held.gen)
    # The event goes before a retry's copy, so no node can see the next attempt first.
    await b.emit(message, ver, label, link)
    if message.status is Status.RETRYING:
        await b.send(link, message, held.gen)
    await held.delivery.ack()
    return Finished(message, label)


async def interrupt(b: AmqpBroker, message: Message) -> None:
    held = b.held.pop(message.id, None)
    message.started_at = None
    message.status = Status.QUEUED
    link = b.link
    if held is None or link is not held.link or not link.usable:
        return
    try:
        await b.emit(message, version(held.gen, message.attempts, REQUEUED), None, link)
        await held.delivery.nack(requeue=True)
    except LINK_ERRORS:
        log.warning("giving back message %s failed; RabbitMQ redelivers it", message.id)


def backoff(b: AmqpBroker, qs: QueueSettings, failures: int) -> float:
    ceiling = min(qs.retry_backoff_max_s, qs.retry_backoff_s * 2 ** (failures - 1))
    return b.rng.uniform(0, ceiling)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
