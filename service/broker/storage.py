"""Where the node-local broker's messages outlive the process: one interface, three kinds.

- NoStorage keeps nothing: what the broker holds ends with the process.
- SnapshotStorage (the memory backend) reads a snapshot at start and writes one at a
  graceful stop; between the two it commits nothing, so every change is applied in the
  step that checked it (commits.py).
- SqliteJournal (the sqlite backend, sqlite.py) commits every change before the broker
  applies it, and gives everything back at the next start, even after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..model import Message
from .base import QueueCounts
from .file_lock import Lock
from .snapshot import read, remove, write

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a previous run left."""

    messages: list[Message]
    paused: list[str]
    # True when the previous run may have died: a message still `running` then lost its
    # attempt to that death (a failure, ProcessDied). False when only a graceful stop can
    # have cut an attempt short, which is no failure.
    crashed: bool
    # Each queue's counts as the previous run left them (published, succeeded, …): kept
    # with the messages, so a restart never shows fewer failures than dead letters.
    counts: dict[str, QueueCounts] = field(default_factory=dict)


NOTHING = Recovered([], [], crashed=False)


class Storage(Protocol):
    # True: write() and set_paused() commit each change, and the broker applies a change
    # only once its commit returns (commits.CommitThenApply). False: nothing is written
    # between load() and close(), so the broker applies each change at once, with no await
    # and no task (commits.ApplyAtOnce); write() and set_paused() then keep nothing.
    writes_each_change: bool

    async def load(self) -> Recovered:
        """Open the storage; what the previous run left."""

    async def write(self, messages: Sequence[Message], forget: Sequence[str] = ()) -> None:
        """Store `messages` as they are at this call and delete the `forget` ids, in one
        transaction; returns once it is committed, raises (NotCommitted) if it is not."""

    async def set_paused(self, queues: Sequence[str]) -> None:
        """Store the whole set of paused queues; returns once committed."""

    async def close(
        self,
        messages: Iterable[Message],
        paused: Sequence[str],
        counts: dict[str, QueueCounts] | None = None,
    ) -> None:
        """Keep what is left at a graceful stop (the broker's every message, the paused
        queues and the counts), then let go of the storage."""

    def health(self) -> dict[str, object]:
        """{'ok': bool, ...}: whether writes can be taken now."""


class NoStorage:
    """Keeps nothing: for a broker whose messages need not outlive the process."""

    writes_each_change = False

    async def load(self) -> Recovered:
        return NOTHING

    async def write(self, messages: Sequence[Message], forget: Sequence[str] = ()) -> None:
        return None  # nothing is kept, so nothing is committed

    async def set_paused(self, queues: Sequence[str]) -> None:
        return None

    async def close(
        self,
        messages: Iterable[Message],
        paused: Sequence[str],
        counts: dict[str, QueueCounts] | None = None,
    ) -> None:
        return None

    def health(self) -> dict[str, object]:
        return {"ok": True}


class SnapshotStorage:
    """The memory backend's: a snapshot read at start, written at a graceful stop."""

    writes_each_change = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = Lock(
            path, "broker.snapshot_path", "a snapshot holds one memory node's messages"
        )

    async def load(self) -> Recovered:
        # Before the snapshot is read: a second node must neither take the first's
        # messages nor, at its stop, replace the snapshot the first will write.
        self._lock.acquire()
        loaded = await asyncio.to_thread(read, self.path)
        if loaded is None:
            return NOTHING
        messages, paused, counts = loaded
        # Deleted once loaded: from here on the messages live in this process.
        await asyncio.to_thread(remove, self.path)
        log.info("restored %d messages from %s", len(messages), self.path)
        return Recovered(messages, paused, crashed=False, counts=counts)

    async def close(
        self,
        messages: Iterable[Message],
        paused: Sequence[str],
        counts: dict[str, QueueCounts] | None = None,
    ) -> None:
        held = list(messages)
        try:
            await asyncio.to_thread(write, self.path, held, paused, counts)
        finally:
            self._lock.release()
        log.info("wrote %d messages to %s", len(held), self.path)

    async def write(self, messages: Sequence[Message], forget: Sequence[str] = ()) -> None:
        return None  # the snapshot at close holds every change; nothing is committed before

    async def set_paused(self, queues: Sequence[str]) -> None:
        return None

    def health(self) -> dict[str, object]:
        return {"ok": True}
