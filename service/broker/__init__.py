"""Backends behind one Protocol; create_broker picks the configured one."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import StartupError
from .base import Broker
from .memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "create_broker"]


def create_broker(settings: Settings) -> Broker:
    backend = settings.broker.backend
    if backend == "memory":
        return MemoryBroker(
            settings.queues, settings.results, snapshot_path=Path(settings.broker.snapshot_path)
        )
    if backend == "sqlite":
        from .sqlite import SqliteJournal

        journal = SqliteJournal(
            Path(settings.broker.sqlite_path), synchronous=settings.broker.sqlite_synchronous
        )
        return MemoryBroker(settings.queues, settings.results, journal=journal)
    raise StartupError(f"broker.backend: {backend!r} is not available in this build")
