"""This node's end of the `spool.events` stream: recording transitions on it, applying what
it brings (from every node) to the View, and knowing when this node has caught up."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable

from aio_pika.abc import AbstractIncomingMessage

from ...model import Message, new_id
from . import topology
from .link import Link
from .state import NodeState
from .view import Event, View, decode_event, encode_event, event_message, message_event

log = logging.getLogger(__name__)

SYNC_TIMEOUT_S = 2.0

# Told when another node (or this one) paused or resumed a queue: (queue, paused).
PauseFollower = Callable[[str, bool], None]
# Told of every node's heartbeat: (node id, sent at).
NodeFollower = Callable[[str, float], None]


class Stream:
    def __init__(
        self, view: View, state: NodeState, on_pause: PauseFollower, on_node: NodeFollower
    ) -> None:
        self._view = view
        self._state = state
        self._on_pause = on_pause
        self._on_node = on_node
        # Where a new connection resumes reading: the start of the history, then one past
        # the last event applied (so a reconnect neither misses nor repeats events).
        self._offset: int | str = "first"
        self._marker = ""  # the token whose return ends the replay at start
        self._syncs: dict[str, asyncio.Future[None]] = {}

    # ------------------------------------------------------------------ reading
    async def subscribe(self, link: Link) -> None:
        await link.consume_events(self._offset, self._on_event)

    async def mark_replay_end(self, link: Link) -> None:
        """Puts a marker on the stream: when it comes back, the history before it is applied
        and `state.caught_up` is set."""
        self._marker = new_id()
        await link.publish(topology.EVENTS, encode_event(Event("marker", token=self._marker)))

    async def _on_event(self, delivery: AbstractIncomingMessage) -> None:
        offset = (delivery.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            self._offset = offset + 1
        try:
            self._apply(delivery.body)
        except Exception:
            log.warning("ignoring an event that does not decode", exc_info=True)
        try:
            await delivery.ack()
        except Exception:
            pass

    def _apply(self, body: bytes) -> None:
        event = decode_event(body)
        if event.kind == "message":
            self._view.apply(event_message(event), event.version, event.count)
        elif event.kind == "pause":
            self._on_pause(event.queue, event.paused)
        elif event.kind == "node":
            self._on_node(event.token, event.at)
        elif event.kind == "dropped":
            self._view.tombstones.get(event.queue, set()).discard(event.token)
        elif event.kind == "marker":
            if event.token == self._marker:
                self._state.caught_up.set()
            fut = self._syncs.get(event.token)
            if fut is not None and not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ writing
    async def emit(self, msg: Message, ver: int, count: str | None, link: Link) -> None:
        """Records a transition: confirmed on the stream, then applied here at once (before
        the stream brings it back). Never the other way round: a transition this node knew
        but the stream lost would make this node drop a redelivery the others wait for."""
        await link.publish(topology.EVENTS, encode_event(message_event(msg, ver, count)))
        self._view.apply(copy.copy(msg), ver, count)  # a copy: the caller keeps changing msg

    async def announce_pause(self, link: Link, queue: str, paused: bool) -> None:
        await link.publish(topology.EVENTS, encode_event(Event("pause", queue, paused=paused)))

    async def announce_node(self, link: Link, node_id: str, at: float) -> None:
        await link.publish(topology.EVENTS, encode_event(Event("node", token=node_id, at=at)))

    async def announce_dropped(self, link: Link, queue: str, message_id: str) -> None:
        """A cancelled message's copy left RabbitMQ: every node stops leaving it out of the
        queued figure."""
        await link.publish(topology.EVENTS, encode_event(Event("dropped", queue, token=message_id)))

    async def sync(self, link: Link, timeout: float = SYNC_TIMEOUT_S) -> None:
        """Returns once this node has applied every event confirmed before the call (a marker
        of its own made the round trip through the stream), or after `timeout`."""
        token = new_id()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._syncs[token] = fut
        try:
            await link.publish(topology.EVENTS, encode_event(Event("marker", token=token)))
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            log.warning("the events stream lags more than %.1f s behind", timeout)
        finally:
            self._syncs.pop(token, None)
