"""Where the schedules' last runs and pauses are kept (ScheduleStore), and the store of the
node-local backends (memory, sqlite): one small JSON file beside the backend's own (`<snapshot_path>.schedules.json`, `<sqlite_path>.schedules.json`),
replaced whole (written, fsynced, renamed) at each run and each pause or resume.

One node owns the backend's file (sqlite's lock, the memory backend's process), so it
owns this one too: a tick is fired by checking and recording here, nothing shared. The
message is published before the run is recorded; a crash between the two leaves the tick
unrecorded, and a catch-up that publishes it again meets its idempotency key in the
backend (while the message is kept, results.ttl_s): still one message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import msgspec

log = logging.getLogger(__name__)

Publish = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class ScheduleState:
    last_run: datetime | None = None
    paused: bool = False


class ScheduleStore(Protocol):
    """Where the schedules' last runs and pauses outlive the process: this file's for
    memory and sqlite, amqp/schedules.py's (shared by every node) for amqp."""

    async def load(self, names: list[str]) -> dict[str, ScheduleState]:
        """At start, before any other call: the state of each of `names`."""

    async def fire(self, name: str, tick: datetime, publish: Publish) -> ScheduleState:
        """Unless the schedule is paused or already ran `tick` (or a later one): publish,
        then keep `tick` as its last run. The state after."""

    async def set_paused(self, name: str, paused: bool) -> ScheduleState: ...

    async def read(self, name: str) -> ScheduleState:
        """The state as it stands (on amqp: as the other nodes may have changed it)."""


class _Stored(msgspec.Struct):
    last_run: datetime | None = None
    paused: bool = False


class FileScheduleStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._states: dict[str, ScheduleState] = {}
        self._write_lock = asyncio.Lock()

    async def load(self, names: list[str]) -> dict[str, ScheduleState]:
        stored = await asyncio.to_thread(self._read)
        self._states = {
            name: ScheduleState(s.last_run, s.paused)
            if (s := stored.get(name))
            else ScheduleState()
            for name in names
        }
        return {n: ScheduleState(s.last_run, s.paused) for n, s in self._states.items()}

    async def fire(self, name: str, tick: datetime, publish: Publish) -> ScheduleState:
        state = self._states[name]
        if not state.paused and (state.last_run is None or tick > state.last_run):
            await publish()
            state.last_run = tick
            await self._write()
        return ScheduleState(state.last_run, state.paused)

    async def set_paused(self, name: str, paused: bool) -> ScheduleState:
        state = self._states[name]
        state.paused = paused
        await self._write()
        return ScheduleState(state.last_run, state.paused)

    async def read(self, name: str) -> ScheduleState:
        state = self._states[name]
        return ScheduleState(state.last_run, state.paused)

    def _read(self) -> dict[str, _Stored]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            return msgspec.json.decode(data, type=dict[str, _Stored])
        except msgspec.DecodeError:
            # The schedules then start afresh: their next ticks run; no catch-up.
            log.warning("ignoring the unreadable schedule state in %s", self.path)
            return {}

    async def _write(self) -> None:
        snapshot = {n: _Stored(s.last_run, s.paused) for n, s in self._states.items()}
        async with self._write_lock:  # one writer of the temporary file at a time
            await asyncio.to_thread(_replace, self.path, msgspec.json.encode(snapshot))


def _replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
