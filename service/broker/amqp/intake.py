"""Which queues this node consumes, and the deliveries that wait for a take.

RabbitMQ pushes deliveries (up to the prefetch, = concurrency) into one inbox per queue; a
take reads the inbox. A paused queue stops its consumers and gives back what its inbox
holds; pause and resume travel to every node on the events stream, and the last word waits
in the queue's state queue for nodes that start later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import msgspec
from aio_pika.abc import AbstractIncomingMessage

from ...tasks import TaskOwner
from . import topology
from .link import Link
from .state import NodeState
from .view import View

log = logging.getLogger(__name__)

Inbox = asyncio.Queue[tuple[Link, AbstractIncomingMessage]]


class PauseState(msgspec.Struct):
    paused: bool


class Intake:
    def __init__(
        self, queues: Iterable[str], view: View, state: NodeState, tasks: TaskOwner
    ) -> None:
        self._view = view
        self._state = state
        self._inboxes: dict[str, Inbox] = {name: asyncio.Queue() for name in queues}
        # Consumers started or stopped because another node paused or resumed a queue: tasks
        # of this owner's (the runtime's), which the stop awaits before the broker closes.
        self._tasks = tasks

    def inbox(self, queue: str) -> Inbox:
        return self._inboxes[queue]

    def deliver_to(self, queue: str, link: Link) -> Callable[[AbstractIncomingMessage], Any]:
        inbox = self._inboxes[queue]

        async def deliver(delivery: AbstractIncomingMessage) -> None:
            inbox.put_nowait((link, delivery))

        return deliver

    def forget_deliveries(self) -> None:
        """The link they came by is gone: RabbitMQ brings them back through the next one."""
        for inbox in self._inboxes.values():
            while not inbox.empty():
                inbox.get_nowait()

    # ------------------------------------------------------------------ consuming on/off
    async def start_unpaused(self, link: Link) -> None:
        """A new link after the replay: consumers for every queue not paused."""
        for name in self._inboxes:
            if not self._view.paused[name]:
                await link.start_consuming(name, self.deliver_to(name, link))

    async def apply(self, queue: str) -> None:
        """Starts or stops this node's consumers of `queue` by its pause flag."""
        link = self._state.live_link()
        if link is None or not self._state.caught_up.is_set():
            return  # the next connection (or the end of the replay) starts them by the flags
        if self._view.paused[queue]:
            await link.stop_consuming(queue)
            inbox = self._inboxes[queue]
            while not inbox.empty():
                came_by, delivery = inbox.get_nowait()
                if came_by is link:
                    await delivery.nack(requeue=True)
        else:
            await link.start_consuming(queue, self.deliver_to(queue, link))

    async def set_paused(self, queue: str, paused: bool) -> None:
        if self._view.paused[queue] != paused:
            self._view.paused[queue] = paused
            await self.apply(queue)

    def follow_pause(self, queue: str, paused: bool) -> None:
        """A pause or resume from the stream (another node's, or this node's own coming back)."""
        if queue in self._view.paused and self._view.paused[queue] != paused:
            self._view.paused[queue] = paused
            self._spawn(self.apply(queue))

    # ------------------------------------------------------------------ pause state
    @staticmethod
    async def remember_pause(link: Link, queue: str, paused: bool) -> None:
        """The state queue keeps the last word for the nodes that start later."""
        await link.publish(topology.state(queue), msgspec.json.encode(PauseState(paused)))

    async def load_pause_state(self, link: Link) -> None:
        """At start, before the replay: the last pause or resume of every queue."""
        assert link.probe is not None
        for name in self._inboxes:
            state = await link.probe.declare_queue(topology.state(name), passive=True)
            got = await state.get(no_ack=False, fail=False)
            if got is None:
                continue
            try:
                self._view.paused[name] = msgspec.json.decode(got.body, type=PauseState).paused
            except msgspec.DecodeError:
                log.warning("ignoring an unreadable pause state for %r", name)
            await got.nack(requeue=True)

    # ------------------------------------------------------------------ background work
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(_logged(coro), name="amqp-consumer-change")


async def _logged(coro: Coroutine[Any, Any, None]) -> None:
    try:
        await coro
    except Exception:
        log.warning("background RabbitMQ call failed", exc_info=True)
