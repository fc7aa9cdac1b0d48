"""What the routes are given, and how a route reaches it.

create_app unpacks the runtime into these services once; a route asks for the ones it uses
(`broker()`, `queue_directory()`, `node()`…) and can reach nothing else: no route, hub or
middleware imports the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Protocol

from quart import current_app

from ..broker.base import Broker
from ..errors import UnknownQueue
from ..metrics import ExecutorGauges, Metrics
from ..scheduler import Scheduler

BROKER = "spool.broker"
QUEUES = "spool.queues"
NODE = "spool.node"
METRICS = "spool.metrics"
EXECUTORS = "spool.executors"
SCHEDULER = "spool.scheduler"


class QueueDirectory:
    """The configured queues: which exist, in their configured order."""

    __slots__ = ("_known", "names")

    def __init__(self, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self._known = frozenset(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def exists(self, name: str) -> None:
        """Raises UnknownQueue (404) unless `name` is a configured queue."""
        if name not in self._known:
            raise UnknownQueue(f"queue {name!r} is not configured")


class LiveNode(Protocol):
    """The node's live state, read-only, as the routes and the hub read it (the Runtime
    provides it)."""

    @property
    def draining(self) -> bool:
        """A stop has begun: not ready, publishes refused."""

    @property
    def running(self) -> int:
        """Attempts in progress."""

    @property
    def loop_lag_s(self) -> float: ...

    def live_consumers(self, queue: str) -> int: ...

    def health(self) -> dict[str, dict[str, object]]: ...


def provide(
    extensions: MutableMapping[str, Any],
    *,
    broker: Broker,
    queues: QueueDirectory,
    node: LiveNode,
    metrics: Metrics,
    executors: ExecutorGauges,
    scheduler: Scheduler | None = None,
) -> None:
    """Hands the services to the app's routes (create_app)."""
    extensions.update(
        {
            BROKER: broker,
            QUEUES: queues,
            NODE: node,
            METRICS: metrics,
            EXECUTORS: executors,
            SCHEDULER: scheduler,
        }
    )


def broker() -> Broker:
    found: Broker = current_app.extensions[BROKER]
    return found


def queue_directory() -> QueueDirectory:
    found: QueueDirectory = current_app.extensions[QUEUES]
    return found


def node() -> LiveNode:
    found: LiveNode = current_app.extensions[NODE]
    return found


def metrics() -> Metrics:
    found: Metrics = current_app.extensions[METRICS]
    return found


def executors() -> ExecutorGauges:
    found: ExecutorGauges = current_app.extensions[EXECUTORS]
    return found


def scheduler() -> Scheduler | None:
    """None when no schedule is configured."""
    found: Scheduler | None = current_app.extensions[SCHEDULER]
    return found
