"""Per-queue state of a node-local broker: the ready line consumers take from,
the status counts behind the depth figures, pause, idempotency keys and dead letters."""

from __future__ import annotations

import asyncio
from collections import Counter

from ..config import QueueSettings
from ..model import WAITING, Message, Status
from .base import QueueCounts, QueueStats
from .ready import ReadyLine

DEPTH_STATUSES = ("scheduled", "queued", "running", "retrying", "dead")


class LocalQueue:
    __slots__ = (
        "counts",
        "dead",
        "idempotency",
        "name",
        "ready",
        "reserved",
        "settings",
        "status_counts",
        "unpaused",
    )

    def __init__(self, name: str, settings: QueueSettings) -> None:
        self.name = name
        self.settings = settings
        self.ready = ReadyLine()
        self.status_counts: Counter[Status] = Counter()
        self.counts = QueueCounts()
        self.idempotency: dict[str, str] = {}
        self.dead: dict[str, None] = {}  # insertion order = dead-letter order
        self.unpaused = asyncio.Event()
        self.unpaused.set()
        # Room held for waiting messages whose commit runs (a redrive with a journal): not
        # in the depth figures until committed, but not offered to anyone else either.
        self.reserved = 0

    @property
    def paused(self) -> bool:
        return not self.unpaused.is_set()

    def waiting(self) -> int:
        counts = self.status_counts
        return sum(counts[s] for s in WAITING)

    def room(self) -> int:
        return self.settings.max_size - self.waiting() - self.reserved

    def unreserve(self, count: int) -> None:
        self.reserved -= count

    def push(self, msg: Message) -> None:
        self.ready.push(msg.id, msg.priority)

    def stats(self) -> QueueStats:
        counts = self.status_counts
        depth = {s: counts[Status(s)] for s in DEPTH_STATUSES if s != "dead"}
        depth["dead"] = len(self.dead)
        return QueueStats(
            name=self.name,
            paused=self.paused,
            max_size=self.settings.max_size,
            depth=depth,
            counts=QueueCounts(**{k: getattr(self.counts, k) for k in QueueCounts.__slots__}),
        )
