"""Backends behind one Protocol; create_broker picks the configured one.

memory and sqlite are one LocalBroker (local.py) over a different Storage (storage.py):
a snapshot written at a graceful stop, or the sqlite journal that commits every change.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import StartupError
from ..tasks import TaskOwner
from .base import Broker
from .local import LocalBroker
from .schedule_store import FileScheduleStore, ScheduleStore
from .storage import SnapshotStorage

__all__ = ["Broker", "LocalBroker", "create_broker", "create_schedule_store"]


def create_broker(settings: Settings, *, tasks: TaskOwner | None = None) -> Broker:
    """The configured backend; `tasks` (the runtime's) owns the tasks the broker starts and
    does not await itself, so the stop awaits them before it closes the broker."""
    backend = settings.broker.backend
    if backend == "memory":
        storage = SnapshotStorage(Path(settings.broker.snapshot_path))
        return LocalBroker(settings.queues, settings.results, storage=storage, tasks=tasks)
    if backend == "sqlite":
        from .sqlite import SqliteJournal

        journal = SqliteJournal(
            Path(settings.broker.sqlite_path), synchronous=settings.broker.sqlite_synchronous
        )
        return LocalBroker(settings.queues, settings.results, storage=journal, tasks=tasks)
    if backend == "amqp":
        from .amqp import AmqpBroker  # aio-pika loads only where it is used

        return AmqpBroker(settings.queues, settings.results, settings.broker.amqp_url, tasks=tasks)
    raise StartupError(f"broker.backend: {backend!r} is not available in this build")


def create_schedule_store(settings: Settings, broker: Broker) -> ScheduleStore:
    """Where the schedules' last runs and pauses are kept: beside the local backend's file,
    or in RabbitMQ, shared by every node (amqp/schedules.py)."""
    backend = settings.broker.backend
    if backend == "amqp":
        from .amqp import AmqpBroker
        from .amqp.schedules import AmqpScheduleStore

        assert isinstance(broker, AmqpBroker)
        return AmqpScheduleStore(broker.node_state)
    path = settings.broker.snapshot_path if backend == "memory" else settings.broker.sqlite_path
    return FileScheduleStore(Path(f"{path}.schedules.json"))
