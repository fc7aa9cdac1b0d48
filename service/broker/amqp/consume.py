"""Consuming on the amqp backend: take → (handler runs) → finish, and interrupt.

A delivery is acked only after its outcome is recorded: the retry's copy or the dead letter
confirmed, then the event confirmed on the stream. A redelivered message whose last known
status is `running` was cut short by a node that died: that counts as a failed attempt, so
a message that kills its node cannot loop forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from aio_pika.abc import AbstractIncomingMessage

from ...config import QueueSettings
from ...model import Message, Status
from .. import policy
from ..base import Finished, Outcome
from ..records import decode_message
from . import topology, wire
from .intake import Intake
from .link import LINK_ERRORS, Link
from .state import NodeState, queue_settings
from .stream import Stream
from .view import FINAL, GEN, REQUEUED, RUNNING, View, version

log = logging.getLogger(__name__)

FINISH_WAIT_S = 10.0  # an outcome waits this long for a connection to be recorded


class Held:
    """A running message's delivery, the link it came by and its redrive generation."""

    __slots__ = ("delivery", "gen", "link")

    def __init__(self, link: Link, delivery: AbstractIncomingMessage, gen: int) -> None:
        self.link, self.delivery, self.gen = link, delivery, gen


class Deliveries:
    def __init__(
        self,
        queues: dict[str, QueueSettings],
        state: NodeState,
        view: View,
        stream: Stream,
        intake: Intake,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self._queues = queues
        self._state = state
        self._view = view
        self._stream = stream
        self._intake = intake
        self._clock = clock
        self._rng = rng
        # The deliveries of the messages running on this node, acked when they finish.
        self._held: dict[str, Held] = {}

    async def take(self, queue: str) -> Message:
        qs = queue_settings(self._queues, queue)
        inbox = self._intake.inbox(queue)
        while True:
            link, delivery = await inbox.get()
            if not link.usable:
                continue  # stale: RabbitMQ redelivers it through the new link
            try:
                msg = await self._claim(link, qs, delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                if await _give_back(link, delivery):
                    raise
                continue  # the connection dropped meanwhile: RabbitMQ redelivers it
            if msg is not None:
                return msg

    async def _claim(
        self, link: Link, qs: QueueSettings, delivery: AbstractIncomingMessage
    ) -> Message | None:
        """The delivery as a running message, or None when it is handled here (not due yet,
        cancelled, already final, expired now, paused, unreadable)."""
        try:
            msg = decode_message(delivery.body)
        except Exception:
            log.error("dropping an unreadable delivery from %s", delivery.routing_key)
            await delivery.reject(requeue=False)
            return None
        if self._view.paused.get(msg.queue):
            await delivery.nack(requeue=True)
            return None
        gen = wire.header_int(delivery, wire.H_GEN)
        msg.attempts = max(msg.attempts, wire.header_int(delivery, wire.H_ATTEMPTS))
        msg.failures = max(msg.failures, wire.header_int(delivery, wire.H_FAILURES))
        # Past its expiry it waits for nothing more: no further hop down the ladder.
        expiring = policy.past_expiry(msg, self._clock())
        remaining = 0.0 if expiring else wire.still_waiting(msg, self._clock())
        if remaining > topology.DUE_SLACK_S:
            await wire.send(link, msg, gen, self._clock())  # the next hop down the ladder
            await delivery.ack()
            return None
        if remaining > 0:
            # Too close to its due time for another hop, but never started before it: a
            # delay is a promise not to run early (late by a hop's latency is the ladder's
            # cost).
            await asyncio.sleep(remaining)
        known = self._view.messages.get(msg.id)
        if delivery.redelivered and (known is None or known.status is not Status.RUNNING):
            # Its last attempt may have begun on a node that just died: that attempt's event
            # was confirmed before the handler started, so once this node has caught up with
            # the stream it knows.
            await self._stream.sync(link)
            known = self._view.messages.get(msg.id)
        known_ver = self._view.versions.get(msg.id, -1)
        if known is not None and known_ver // GEN == gen:
            if known.status.final:
                await delivery.ack()  # cancelled, or its outcome was recorded before the ack
                tombstones = self._view.tombstones[msg.queue]
                if msg.id in tombstones:
                    tombstones.discard(msg.id)
                    await self._stream.announce_dropped(link, msg.queue, msg.id)
                return None
            msg.attempts = max(msg.attempts, known.attempts)
            msg.failures = max(msg.failures, known.failures)
            if known.status is Status.RUNNING and delivery.redelivered:
                # The node that ran it died (or lost RabbitMQ) before recording the outcome.
                used_up = policy.record_process_death(msg, qs, self._clock())
                if used_up:  # its retries: a dead letter now, not another attempt
                    await self._dead_letter(link, msg, gen)
                    await delivery.ack()
                    return None
        now = self._clock()
        if policy.past_expiry(msg, now):
            # Not started by its expiry: never run. The event first, then the ack, as for
            # every outcome (a node that dies between them leaves a redelivery that the
            # next consumer finds final).
            label = policy.mark_expired(msg, now)
            await self._stream.emit(msg, version(gen, msg.attempts, FINAL), label, link)
            await delivery.ack()
            return None
        policy.start_attempt(msg, now)
        msg.enqueued_at = msg.scheduled_for or msg.created_at
        msg.finished_at = None
        # Confirmed before the handler starts: if this node dies now, the attempt counts.
        await self._stream.emit(msg, version(gen, msg.attempts, RUNNING), None, link)
        self._held[msg.id] = Held(link, delivery, gen)
        return msg

    async def _dead_letter(self, link: Link, msg: Message, gen: int) -> None:
        """Records a message the policy made a dead letter: the copy, then the event."""
        await wire.send_dead(link, msg, gen)
        await self._stream.emit(msg, version(gen, msg.attempts, FINAL), "failed", link)

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        qs = queue_settings(self._queues, message.queue)
        held = self._held.pop(message.id)
        label = policy.record_outcome(message, outcome, qs, self._clock(), self._rng)
        step = REQUEUED if message.status is Status.RETRYING else FINAL
        ver = version(held.gen, message.attempts, step)
        link = await self._state.usable_link(FINISH_WAIT_S)
        if link is not held.link:
            # The delivery died with its connection and is redelivered: record a success (so
            # the redelivery is skipped) but leave a retry or dead letter to the redelivery.
            if message.status is Status.SUCCEEDED:
                await self._stream.emit(message, ver, label, link)
            return Finished(message, label)
        if message.status is Status.FAILED:
            await wire.send_dead(link, message, held.gen)
        # The event goes before a retry's copy, so no node can see the next attempt first.
        await self._stream.emit(message, ver, label, link)
        if message.status is Status.RETRYING:
            await wire.send(link, message, held.gen, self._clock())
        await held.delivery.ack()
        return Finished(message, label)

    async def interrupt(self, message: Message) -> None:
        held = self._held.pop(message.id, None)
        policy.give_back(message)
        link = self._state.link
        if held is None or link is not held.link or not link.usable:
            return
        try:
            await self._stream.emit(
                message, version(held.gen, message.attempts, REQUEUED), None, link
            )
            await held.delivery.nack(requeue=True)
        except LINK_ERRORS:
            log.warning("giving back message %s failed; RabbitMQ redelivers it", message.id)


async def _give_back(link: Link, delivery: AbstractIncomingMessage) -> bool:
    """Nack a delivery whose claim failed, so it is never left unacked on a live channel;
    whether the link is still live afterwards (else RabbitMQ redelivers it on the next)."""
    if link.usable:
        try:
            await delivery.nack(requeue=True)
        except Exception:
            log.debug("giving a delivery back failed", exc_info=True)
    return link.usable
