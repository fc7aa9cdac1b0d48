"""The amqp backend's operator actions: cancel, pause and resume for every node, and redrive
from the dead-letter queue."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiormq

from ...errors import NotFound
from ...model import Message
from .. import policy
from ..base import QueueStats, Redriven
from ..records import decode_message, encode_message
from . import topology, wire
from .figures import Figures
from .intake import Intake
from .node import Node
from .state import queue_settings
from .view import FINAL, GEN, NEW, turns, version

log = logging.getLogger(__name__)


class Admin:
    def __init__(self, node: Node, intake: Intake, figures: Figures) -> None:
        self._node = node
        self._intake = intake
        self._figures = figures

    async def cancel(self, message_id: str) -> Message:
        known = self._node.view.messages.get(message_id)
        if known is None:
            raise NotFound(f"message {message_id!r} is not known")
        policy.check_cancellable(known)
        link = await self._node.state.usable_link()
        gen = self._node.view.versions[message_id] // GEN
        msg = decode_message(encode_message(known))
        policy.mark_cancelled(msg, self._node.clock())
        # The copy in RabbitMQ stays until a consumer meets it and drops it (a final status).
        await self._node.stream.emit(msg, version(gen, turns(msg), FINAL), "cancelled", link)
        return msg

    async def set_paused(self, queue: str, paused: bool) -> QueueStats:
        queue_settings(self._node.queues, queue)
        link = await self._node.state.usable_link()
        # The state queue keeps the last word for nodes that start later; the stream tells
        # the nodes that run now.
        await self._intake.remember_pause(link, queue, paused)
        await self._node.stream.announce_pause(link, queue, paused)
        await self._intake.set_paused(queue, paused)
        return self._figures.stats(queue)

    async def redrive(self, queue: str, ids: Sequence[str] | None) -> Redriven:
        qs = queue_settings(self._node.queues, queue)
        link = await self._node.state.usable_link()
        # A channel of its own: what it holds and does not ack goes back when it closes.
        channel = await link.connection.channel(publisher_confirms=False)
        try:
            dead = await channel.declare_queue(topology.dead(queue), passive=True)
            count = int(dead.declaration_result.message_count or 0)
            letters: dict[str, tuple[Any, Message, int]] = {}
            duplicates = []
            for _ in range(count):
                got = await dead.get(no_ack=False, fail=False)
                if got is None:
                    break
                msg = decode_message(got.body)
                if msg.id in letters:
                    duplicates.append((msg.id, got))
                else:
                    letters[msg.id] = (got, msg, wire.header_int(got, wire.H_GEN))
            wanted = list(letters) if ids is None else list(dict.fromkeys(ids))
            chosen = [i for i in wanted if i in letters]
            skipped = [i for i in wanted if i not in letters]
            await self._figures.refresh_queue(link, queue)
            waiting = self._figures.waiting(queue)
            policy.check_room(queue, waiting, qs.max_size, len(chosen), dead_letters=True)
            done = 0
            for mid in chosen:
                got, msg, gen = letters[mid]
                policy.reset_for_redrive(msg, self._node.clock())
                try:
                    await wire.send(link, msg, gen + 1, self._node.clock())
                except aiormq.exceptions.DeliveryError:
                    skipped.extend(i for i in chosen[done:])
                    break
                await self._node.stream.emit(msg, version(gen + 1, 0, NEW), None, link)
                await got.ack()
                done += 1
            chosen_set = set(chosen[:done])
            for mid, got in duplicates:
                if mid in chosen_set:
                    await got.ack()  # a second copy of a letter that was just redriven
            return Redriven(done, skipped)
        finally:
            if not channel.is_closed:
                await channel.close()
