"""Node: what the publish, consume and admin parts of the amqp broker all work with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...config import QueueSettings
from .state import NodeState
from .stream import Stream
from .view import View


@dataclass(frozen=True, slots=True)
class Node:
    queues: dict[str, QueueSettings]  # the configured queues, by name
    state: NodeState  # the current link, connected / caught-up
    view: View  # what this node knows of every message
    stream: Stream  # the events stream: emit, apply, sync
    clock: Callable[[], float]
