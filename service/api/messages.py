"""Publish (one, batch), read (with long-poll), cancel."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from quart import Blueprint, Response, current_app

from ..broker.base import Broker
from ..errors import Invalid, InvalidEnvelope, NotFound
from ..metrics import Metrics
from ..model import Batch, Envelope, Message
from .answers import accepted_view, batch_answer
from .auth import requires
from .common import json_response, query_seconds, read_json, refuse_when_draining
from .services import broker, metrics, node, queue_directory

bp = Blueprint("messages", __name__)

MAX_WAIT_S = 60.0
_created, _message = attrgetter("created"), attrgetter("message")


PUBLISHER = "spool.publisher"

# What a publish answers: a document (a value to encode, or bytes of JSON already written:
# common.encoded), a status and extra headers.
Answer = tuple[Any, int, dict[str, str] | None]


class Publisher:
    """What a publish does once its body is decoded: shared by the routes below and the
    fast path (fastpath.py), so both do exactly the same."""

    __slots__ = ("_broker", "_metrics", "max_batch")

    def __init__(self, broker: Broker, metrics: Metrics, max_batch: int) -> None:
        self._broker = broker
        self._metrics = metrics
        self.max_batch = max_batch

    async def one(self, queue: str, envelope: Envelope) -> Answer:
        (published,) = await self._broker.publish(queue, [envelope])
        message = published.message
        if not published.created:
            return message.view(), 200, None
        self._metrics.queues[queue].published.inc()
        return accepted_view(message), 202, {"Location": f"/v1/messages/{message.id}"}

    async def many(self, queue: str, batch: Batch) -> Answer:
        limit = self.max_batch
        if len(batch.messages) > limit:
            raise Invalid(
                f"messages: {len(batch.messages)} messages; server.max_batch allows {limit}",
                field="messages",
            )
        try:
            published = await self._broker.publish(queue, batch.messages)
        except InvalidEnvelope as exc:
            raise exc.in_batch() from None
        created = sum(map(_created, published))  # C loops: a batch has a thousand
        if created:
            self._metrics.queues[queue].published.inc(created)
        if created == len(published):
            return batch_answer(batch.messages, list(map(_message, published))), 202, None
        views = [accepted_view(p.message) if p.created else p.message.view() for p in published]
        return {"messages": views}, 202, None


def publisher() -> Publisher:
    found: Publisher = current_app.extensions[PUBLISHER]
    return found


@bp.post("/v1/queues/<queue>/messages")
@requires("publish")
async def publish(queue: str) -> Response:
    state = node()
    refuse_when_draining(state)
    queue_directory().exists(queue)  # 404 for an unknown queue before the body is read
    envelope = await read_json(Envelope)
    refuse_when_draining(state)  # again: a slow upload may end after the snapshot is written
    return json_response(*await publisher().one(queue, envelope))


@bp.post("/v1/queues/<queue>/messages/batch")
@requires("publish")
async def publish_batch(queue: str) -> Response:
    state = node()
    refuse_when_draining(state)
    queue_directory().exists(queue)
    batch = await read_json(Batch)
    refuse_when_draining(state)
    return json_response(*await publisher().many(queue, batch))


@bp.get("/v1/messages/<message_id>")
@requires("publish", "read")
async def get_message(message_id: str) -> Response:
    wait = query_seconds("wait", MAX_WAIT_S)
    if wait is None:
        message = await broker().get(message_id)
    else:
        message = await broker().wait(message_id, wait)
    return json_response(_known(message, message_id).view())


@bp.delete("/v1/messages/<message_id>")
@requires("admin")
async def cancel_message(message_id: str) -> Response:
    message = await broker().cancel(message_id)
    metrics().queues[message.queue].processed["cancelled"].inc()
    return json_response(message.view())


def _known(message: Message | None, message_id: str) -> Message:
    if message is None:
        raise NotFound(f"message {message_id!r} is not known (or its result has expired)")
    return message
