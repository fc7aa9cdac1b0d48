"""Which nodes are alive, from their heartbeats on the events stream: how the nodes share
each queue's rate limit without a leader (README, Rate limits).

Every node that has a rate-limited queue puts a small `node` event on `spool.events` every
HEARTBEAT_S, stamped with its wall clock. A node counts itself and every other node whose
latest heartbeat is at most LIVE_S old, and each of its limited queues takes rate / count.
The history the stream replays at start already holds the heartbeats of the last seconds,
so a new node knows its share before its first message. A node that dies stops counting
after LIVE_S: until then the others run a little under the limit, never over it. Nodes'
clocks must agree within about a second (NTP), since the stamps are compared across nodes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...model import new_id
from .link import LINK_ERRORS
from .state import NodeState
from .stream import Stream

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
# Three and a half beats: a beat that one scheduling hiccup delays does not drop a node.
LIVE_S = 3.5


class Presence:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.node_id = new_id()
        self._clock = clock
        self._seen: dict[str, float] = {}  # another node's id → its latest heartbeat's stamp

    def saw(self, node_id: str, at: float) -> None:
        if node_id != self.node_id and at > self._seen.get(node_id, 0.0):
            self._seen[node_id] = at

    def live_nodes(self) -> int:
        """This node and every other one heard from within LIVE_S."""
        oldest = self._clock() - LIVE_S
        stale = [node for node, at in self._seen.items() if at < oldest]
        for node in stale:
            del self._seen[node]
        return 1 + len(self._seen)

    async def beat(self, state: NodeState, stream: Stream) -> None:
        """Heartbeats until cancelled; a beat missed while RabbitMQ is away is just missed."""
        while True:
            link = state.live_link()
            if link is not None:
                try:
                    await stream.announce_node(link, self.node_id, self._clock())
                except LINK_ERRORS:
                    log.debug("a heartbeat was not sent; the connection is being reopened")
            await asyncio.sleep(HEARTBEAT_S)
