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

from aio_pika.abc import AbstractIncomingMessage

from ...config import QueueSettings
from ...model import Message, Status
from .. import policy
from ..base import Finished, Outcome
from ..records import decode_message
from . import topology, wire
from .intake import Intake
from .link import LINK_ERRORS, Link
from .node import Node
from .state import queue_settings
from .view import FINAL, GEN, REQUEUED, RUNNING, turns, version

log = logging.getLogger(__name__)

FINISH_WAIT_S = 10.0  # an outcome waits this long for a connection to be recorded


class Held:
    """A running message's delivery, the link it came by and its redrive generation."""

    __slots__ = ("delivery", "gen", "link")

    def __init__(self, link: Link, delivery: AbstractIncomingMessage, gen: int) -> None:
        self.link, self.delivery, self.gen = link, delivery, gen


class Deliveries:
    def __init__(self, node: Node, intake: Intake, rng: random.Random) -> None:
        self._node = node
        self._intake = intake
        self._rng = rng
        # The deliveries of the messages running on this node, acked when they finish.
        self._held: dict[str, Held] = {}

    async def take(self, queue: str) -> Message:
        qs = queue_settings(self._node.queues, queue)
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
        cancelled, already final, paused, unreadable)."""
        try:
            msg = decode_message(delivery.body)
        except Exception:
            log.error("dropping an unreadable delivery from %s", delivery.routing_key)
            await delivery.reject(requeue=False)
            return None
        if self._node.view.paused.get(msg.queue):
            await delivery.nack(requeue=True)
            return None
        gen = wire.header_int(delivery, wire.H_GEN)
        msg.attempts = max(msg.attempts, wire.header_int(delivery, wire.H_ATTEMPTS))
        msg.failures = max(msg.failures, wire.header_int(delivery, wire.H_FAILURES))
        remaining = wire.still_waiting(msg, self._node.clock())
        if remaining > topology.DUE_SLACK_S:
            await wire.send(link, msg, gen, self._node.clock())  # the next hop down the ladder
            await delivery.ack()
            return None
        if remaining > 0:
            # Too close to its due time for another hop, but never started before it: a
            # delay is a promise not to run early (late by a hop's latency is the ladder's
            # cost).
            await asyncio.sleep(remaining)
        if await self._settled_by_history(link, qs, delivery, msg, gen):
            return None
        policy.start_attempt(msg, self._node.clock())
        msg.enqueued_at = msg.scheduled_for or msg.created_at
        msg.finished_at = None
        # Confirmed before the handler starts: if this node dies now, the attempt counts.
        await self._node.stream.emit(msg, version(gen, turns(msg), RUNNING), None, link)
        self._held[msg.id] = Held(link, delivery, gen)
        return msg

    async def _settled_by_history(
        self,
        link: Link,
        qs: QueueSettings,
        delivery: AbstractIncomingMessage,
        msg: Message,
        gen: int,
    ) -> bool:
        """True when what this node knows of the message settles the delivery here: final
        already (acked), or its node died and that used up its retries (a dead letter now).
        Otherwise the counts this node knows are carried over to `msg`."""
        known = self._node.view.messages.get(msg.id)
        if delivery.redelivered and (known is None or known.status is not Status.RUNNING):
            # Its last attempt may have begun on a node that just died: that attempt's event
            # was confirmed before the handler started, so once this node has caught up with
            # the stream it knows.
            await self._node.stream.sync(link)
            known = self._node.view.messages.get(msg.id)
        known_ver = self._node.view.versions.get(msg.id, -1)
        if known is None or known_ver // GEN != gen:
            return False
        if known.status.final:
            await delivery.ack()  # cancelled, or its outcome was recorded before the ack
            tombstones = self._node.view.tombstones[msg.queue]
            if msg.id in tombstones:
                tombstones.discard(msg.id)
                await self._node.stream.announce_dropped(link, msg.queue, msg.id)
            return True
        if turns(known) > turns(msg):
            # Not max() of each: a snooze takes its attempt back out of `attempts`, so the
            # later of the two records says how many attempts there were.
            msg.attempts, msg.snoozes = known.attempts, known.snoozes
        msg.failures = max(msg.failures, known.failures)
        if known.status is Status.RUNNING and delivery.redelivered:
            # The node that ran it died (or lost RabbitMQ) before recording the outcome.
            used_up = policy.record_process_death(msg, qs, self._node.clock())
            if used_up:  # its retries: a dead letter now, not another attempt
                await self._dead_letter(link, msg, gen)
                await delivery.ack()
                return True
        return False

    async def _dead_letter(self, link: Link, msg: Message, gen: int) -> None:
        """Records a message the policy made a dead letter: the copy, then the event."""
        await wire.send_dead(link, msg, gen)
        await self._node.stream.emit(msg, version(gen, turns(msg), FINAL), "failed", link)

    async def finish(self, message: Message, outcome: Outcome) -> Finished:
        qs = queue_settings(self._node.queues, message.queue)
        held = self._held.pop(message.id)
        label = policy.record_outcome(message, outcome, qs, self._node.clock(), self._rng)
        waits = message.status is Status.RETRYING or message.status is Status.SCHEDULED
        step = REQUEUED if waits else FINAL
        count = None if label == "snoozed" else label  # a snooze is in no QueueCounts figure
        ver = version(held.gen, turns(message), step)
        link = await self._node.state.usable_link(FINISH_WAIT_S)
        if link is not held.link:
            # The delivery died with its connection and is redelivered: record a success (so
            # the redelivery is skipped) but leave a retry or dead letter to the redelivery.
            if message.status is Status.SUCCEEDED:
                await self._node.stream.emit(message, ver, count, link)
            return Finished(message, label)
        if message.status is Status.FAILED:
            await wire.send_dead(link, message, held.gen)
        # The event goes before a retry's copy, so no node can see the next attempt first.
        await self._node.stream.emit(message, ver, count, link)
        if waits:  # a retry, or a snooze: its copy waits on the delay ladder
            await wire.send(link, message, held.gen, self._node.clock())
        await held.delivery.ack()
        return Finished(message, label)

    async def interrupt(self, message: Message) -> None:
        held = self._held.pop(message.id, None)
        policy.give_back(message)
        link = self._node.state.link
        if held is None or link is not held.link or not link.usable:
            return
        try:
            await self._node.stream.emit(
                message, version(held.gen, turns(message), REQUEUED), None, link
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
