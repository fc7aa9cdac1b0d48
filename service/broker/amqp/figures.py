"""The queue figures on the amqp backend: how many messages RabbitMQ holds per queue (from
passive declares, refreshed once a second and before a check of room) and, with what the
View knows, the stats a GET /v1/queues/{name} answers with."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...config import QueueSettings
from ...model import Status
from ..base import QueueCounts, QueueStats
from . import topology
from .link import Link
from .state import NodeState, queue_settings
from .view import View

log = logging.getLogger(__name__)

FIGURES_INTERVAL_S = 1.0
REFRESH_TIMEOUT_S = 5.0


class Figures:
    def __init__(self, queues: dict[str, QueueSettings], view: View) -> None:
        self._queues = queues
        self._view = view
        # Per queue: ready messages in its work, due and dead queues, as last read.
        self._depths: dict[str, dict[str, int]] = {name: {} for name in queues}

    async def refresh_queue(self, link: Link, queue: str) -> None:
        self._depths[queue] = {
            "work": await link.depth(topology.work(queue)),
            "due": await link.depth(topology.due(queue)),
            "dead": await link.depth(topology.dead(queue)),
        }

    async def refresh(self, link: Link | None) -> None:
        if link is None:
            return
        for name in self._queues:
            await self.refresh_queue(link, name)

    async def keep_fresh(self, state: NodeState, sweep: Callable[[], None]) -> None:
        """Figures for cached_stats (passive declares) and results retention (`sweep`), once
        a second, until cancelled."""
        while True:
            await asyncio.sleep(FIGURES_INTERVAL_S)
            sweep()
            try:
                await asyncio.wait_for(self.refresh(state.live_link()), REFRESH_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("refreshing queue figures failed", exc_info=True)

    def waiting(self, queue: str) -> int:
        """Messages that wait in `queue`: ready in RabbitMQ, or scheduled or retrying (on the
        delay ladder, which RabbitMQ's figures leave out)."""
        depths = self._depths[queue]
        counts = self._view.status_counts[queue]
        ready = depths.get("work", 0) + depths.get("due", 0)
        return ready + counts[Status.SCHEDULED] + counts[Status.RETRYING]

    def stats(self, queue: str) -> QueueStats:
        qs = queue_settings(self._queues, queue)
        depths = self._depths[queue]
        counts = self._view.status_counts[queue]
        qc = self._view.counts[queue]
        return QueueStats(
            name=queue,
            paused=self._view.paused[queue],
            max_size=qs.max_size,
            depth={
                "scheduled": counts[Status.SCHEDULED],
                "queued": max(
                    0,
                    depths.get("work", 0)
                    + depths.get("due", 0)
                    - len(self._view.tombstones[queue]),
                ),
                "running": counts[Status.RUNNING],
                "retrying": counts[Status.RETRYING],
                "dead": depths.get("dead", len(self._view.dead[queue])),
            },
            counts=QueueCounts(**{k: getattr(qc, k) for k in QueueCounts.__slots__}),
        )
