"""Publish (one, batch), read (with long-poll), cancel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from operator import attrgetter
from typing import Any, Protocol

from quart import Blueprint, Response, current_app, request

from ..broker.base import Broker
from ..config import QueueSettings
from ..config_values import parse_rate
from ..errors import BadRequest, Invalid, NotFound
from ..metrics import Metrics
from ..model import Batch, Envelope, Message
from ..tracing import Incoming, Spans, incoming
from .answers import accepted_view, batch_answer
from .auth import requires
from .common import (
    json_response,
    preferred_wait,
    query_seconds,
    read_json,
    refuse_when_draining,
)
from .services import broker, metrics, node, queue_directory

bp = Blueprint("messages", __name__)

MAX_WAIT_S = 60.0
MAX_PUBLISH_WAIT_S = 30.0  # Prefer: wait=N on a publish: 0 < N <= this
WAIT_FOR = ("final", "progress")
_created, _message = attrgetter("created"), attrgetter("message")


PUBLISHER = "spool.publisher"

# What a publish answers: a document (a value to encode, or bytes of JSON already written:
# common.encoded), a status and extra headers.
Answer = tuple[Any, int, dict[str, str] | None]


class PublishOne(Protocol):
    """Publisher.one: the queue, the decoded envelope, the request's trace context and its
    Prefer: wait=N (RFC 7240), already checked by preferred_wait."""

    async def __call__(
        self, queue: str, envelope: Envelope, trace: Incoming | None, wait: float | None = None, /
    ) -> Answer: ...


class PublishMany(Protocol):
    """Publisher.many: the queue, the decoded batch, the request's trace context."""

    async def __call__(self, queue: str, batch: Batch, trace: Incoming | None, /) -> Answer: ...


class Publisher:
    """What a publish does once its body is decoded: shared by the routes below and the
    fast path (fastpath.py), so both do exactly the same."""

    __slots__ = ("_broker", "_metrics", "_policies", "_spans", "many", "max_batch", "one")

    def __init__(
        self,
        broker: Broker,
        metrics: Metrics,
        max_batch: int,
        policies: dict[str, dict[str, str]] | None = None,
        spans: Spans | None = None,
    ) -> None:
        self._broker = broker
        self._metrics = metrics
        self.max_batch = max_batch
        # The RateLimit-Policy header of each rate-limited queue (rate_limit_policies).
        self._policies = policies or {}
        self._spans = spans  # OpenTelemetry's, when configured (otel_setup.spans_from_environment)
        # Chosen once, so a publish without OpenTelemetry pays nothing for it.
        self.one: PublishOne = self._one if spans is None else self._one_in_span
        self.many: PublishMany = self._many if spans is None else self._many_in_span

    async def _one(
        self, queue: str, envelope: Envelope, trace: Incoming | None, wait: float | None = None
    ) -> Answer:
        (published,) = await self._broker.publish(queue, [envelope], trace)
        message = published.message
        policy = self._policies.get(queue)
        if published.created:
            self._metrics.queues[queue].published.inc()
        if wait is not None:
            return await self._waited(message, published.created, wait, policy)
        if not published.created:
            return message.view(), 200, policy
        location = {"Location": f"/v1/messages/{message.id}"}
        return accepted_view(message), 202, location if policy is None else location | policy

    async def _waited(
        self, message: Message, created: bool, wait: float, policy: dict[str, str] | None
    ) -> Answer:
        """Publish and wait: 200 with the final message if it ends within `wait` seconds,
        else what the publish answers without it (the same long-poll as GET ?wait=)."""
        applied = {"Preference-Applied": f"wait={wait:g}", **(policy or {})}
        if not message.status.final:
            message = await self._broker.wait(message.id, wait) or message
        if message.status.final or not created:
            return message.view(), 200, applied
        applied["Location"] = f"/v1/messages/{message.id}"
        return accepted_view(message), 202, applied

    async def _many(self, queue: str, batch: Batch, trace: Incoming | None) -> Answer:
        limit = self.max_batch
        if len(batch.messages) > limit:
            raise Invalid(
                f"messages: {len(batch.messages)} messages; server.max_batch allows {limit}",
                field="messages",
            )
        published = await self._broker.publish(queue, batch.messages, trace)
        created = sum(map(_created, published))  # C loops: a batch has a thousand
        if created:
            self._metrics.queues[queue].published.inc(created)
        policy = self._policies.get(queue)
        if created == len(published):
            return batch_answer(batch.messages, list(map(_message, published))), 202, policy
        views = [accepted_view(p.message) if p.created else p.message.view() for p in published]
        return {"messages": views}, 202, policy

    async def _one_in_span(
        self, queue: str, envelope: Envelope, given: Incoming | None, wait: float | None = None
    ) -> Answer:
        one = partial(self._one, queue, envelope, wait=wait)
        return await self._in_span(queue, 1, given, one)

    async def _many_in_span(self, queue: str, batch: Batch, given: Incoming | None) -> Answer:
        count = len(batch.messages)
        return await self._in_span(queue, count, given, partial(self._many, queue, batch))

    async def _in_span(
        self,
        queue: str,
        count: int,
        given: Incoming | None,
        publish: Callable[[Incoming | None], Awaitable[Answer]],
    ) -> Answer:
        """A publish as a "publish QUEUE" span (OpenTelemetry), whose context its messages
        carry: a child of the request's trace context, or the root of a new trace."""
        assert self._spans is not None
        span = self._spans.publish(queue, given, count)
        try:
            answer = await publish(span.carried)
        except BaseException as exc:
            span.end(exc)
            raise
        span.end(None)
        return answer


def rate_limit_policies(queues: Mapping[str, QueueSettings]) -> dict[str, dict[str, str]]:
    """queue → its RateLimit-Policy header (draft-ietf-httpapi-ratelimit-headers), for the
    rate-limited queues: the limit its consumers keep, so a producer can pace itself."""
    return {
        name: {"RateLimit-Policy": parse_rate(q.rate_limit).policy(name)}
        for name, q in queues.items()
        if q.rate_limit is not None
    }


def publisher() -> Publisher:
    found: Publisher = current_app.extensions[PUBLISHER]
    return found


@bp.post("/v1/queues/<queue>/messages")
@requires("publish")
async def publish(queue: str) -> Response:
    state = node()
    refuse_when_draining(state)
    queue_directory().exists(queue)  # 404 for an unknown queue before the body is read
    wait = preferred_wait(request.headers.getlist("Prefer"), MAX_PUBLISH_WAIT_S)
    envelope = await read_json(Envelope)
    refuse_when_draining(state)  # again: a slow upload may end after the snapshot is written
    return json_response(*await publisher().one(queue, envelope, _request_trace(), wait))


@bp.post("/v1/queues/<queue>/messages/batch")
@requires("publish")
async def publish_batch(queue: str) -> Response:
    state = node()
    refuse_when_draining(state)
    queue_directory().exists(queue)
    batch = await read_json(Batch)
    refuse_when_draining(state)
    return json_response(*await publisher().many(queue, batch, _request_trace()))


@bp.get("/v1/messages/<message_id>")
@requires("publish", "read")
async def get_message(message_id: str) -> Response:
    wait = query_seconds("wait", MAX_WAIT_S)
    wait_for = request.args.get("wait_for", "final")
    if wait_for not in WAIT_FOR:
        raise BadRequest(f"wait_for: expected one of {', '.join(WAIT_FOR)}, got {wait_for!r}")
    if wait is None:
        message = await broker().get(message_id)
    else:
        message = await broker().wait(message_id, wait, progress=wait_for == "progress")
    return json_response(_known(message, message_id).view())


@bp.delete("/v1/messages/<message_id>")
@requires("admin")
async def cancel_message(message_id: str) -> Response:
    message = await broker().cancel(message_id)
    metrics().queues[message.queue].processed["cancelled"].inc()
    return json_response(message.view())


def _request_trace() -> Incoming | None:
    """The request's W3C trace context (several tracestate headers make one list)."""
    headers = request.headers
    states = headers.getlist("tracestate")
    return incoming(headers.get("traceparent"), ",".join(states) if states else None)


def _known(message: Message | None, message_id: str) -> Message:
    if message is None:
        raise NotFound(f"message {message_id!r} is not known (or its result has expired)")
    return message
