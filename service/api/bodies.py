"""Every JSON body the API answers, as the msgspec types it encodes (with MessageView and
ErrorInfo from model.py).

Each is defined here once: the routes encode these types, /openapi.json's component schemas
are generated from them (openapi.py), docs/api.md is generated from that document, and
tests/contract/test_answer_types.py decodes every answer as the type its route documents,
so neither the document nor the reference can drift from what is written. The client
(service/client/models.py) keeps its own decoding types; tests/test_api_types.py pins their
fields to these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..model import MessageView
from ..scheduler import ScheduleView


def ref(kind: type) -> dict[str, str]:
    """The OpenAPI reference to `kind`'s component schema (openapi.py generates them)."""
    return {"$ref": f"#/components/schemas/{kind.__name__}"}


class Problem(msgspec.Struct, omit_defaults=True):
    """Every error answer (application/problem+json, RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    field: Annotated[str | None, msgspec.Meta(description="a 422's field, by path")] = None


class MessageList(msgspec.Struct):
    messages: list[MessageView]


class DeadPage(msgspec.Struct):
    """Dead letters, newest first."""

    messages: list[MessageView]
    next_cursor: Annotated[str | None, msgspec.Meta(description="null on the last page")]


class Depth(msgspec.Struct):
    """Messages by status now (dead: the dead letters held)."""

    scheduled: int
    queued: int
    running: int
    retrying: int
    dead: int


class Counts(msgspec.Struct):
    """Totals since the queue was created, kept across restarts with the messages (memory:
    the snapshot; sqlite: the journal; amqp: what the events stream still holds)."""

    published: int
    succeeded: int
    retried: int
    failed: int
    cancelled: int
    expired: Annotated[int, msgspec.Meta(description="not started by their expires_at")]


class QueueFigures(msgspec.Struct):
    name: str
    paused: bool
    consumers: Annotated[int, msgspec.Meta(description="live consumer tasks on this node")]
    max_size: int
    depth: Depth
    counts: Counts


class QueueList(msgspec.Struct):
    queues: list[QueueFigures]


class Redriven(msgspec.Struct):
    redriven: int
    skipped: Annotated[list[str], msgspec.Meta(description="ids that are not dead letters")]


class Liveness(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    status: Literal["ready", "not_ready"]
    checks: Annotated[
        dict[str, dict[str, Any]], msgspec.Meta(description='each check\'s {"ok": bool, ...}')
    ]


class ExecutorFigures(msgspec.Struct):
    busy: int
    size: int


class NodeState(msgspec.Struct):
    """The `node` of each `event: queues`."""

    version: str
    backend: str
    draining: bool
    running: int
    loop_lag_ms: float
    max_loop_lag_ms: float
    executors: dict[str, ExecutorFigures]


class NodeFigures(NodeState):
    """GET /v1/node: the node's state and what the caller's token may do."""

    auth: bool
    scopes: list[str]
    streams: int


class Percentiles(msgspec.Struct):
    p50: float | None
    p95: float | None


class Latency(msgspec.Struct):
    """Seconds over the last 5 minutes; null without samples."""

    wait_s: Percentiles
    processing_s: Percentiles


class LiveQueueFigures(QueueFigures):
    latency: Latency


class QueuesEvent(msgspec.Struct):
    """The data of each `event: queues` of GET /v1/events."""

    queues: list[LiveQueueFigures]
    node: NodeState


class ScheduleList(msgspec.Struct):
    """GET /v1/schedules: every [schedules.NAME] of the config, in its order."""

    schedules: list[ScheduleView]


class CountsSample(msgspec.Struct):
    """A queue's counts at one moment (totals, as in QueueFigures.counts)."""

    t: str  # RFC 3339 UTC, as every time of the API
    published: int
    succeeded: int
    retried: int
    failed: int
    cancelled: int
    expired: int


class QueueHistory(msgspec.Struct):
    """GET /v1/queues/{queue}/history: the queue's counts once a second, oldest first."""

    queue: str
    interval_s: float
    max_samples: int
    samples: list[CountsSample]
