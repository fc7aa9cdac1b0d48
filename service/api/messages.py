"""Publish (one, batch), read (with long-poll), cancel."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from quart import Blueprint, Response

from ..errors import Invalid, NotFound
from ..model import Batch, Envelope, Message
from ..runtime import Runtime
from .answers import accepted_view, batch_answer
from .auth import requires
from .common import json_response, query_seconds, read_json, refuse_when_draining, runtime

bp = Blueprint("messages", __name__)

MAX_WAIT_S = 60.0
_created, _message = attrgetter("created"), attrgetter("message")


@bp.post("/v1/queues/<queue>/messages")
@requires("publish")
async def publish(queue: str) -> Response:
    rt = runtime()
    refuse_when_draining(rt)
    rt.broker.cached_stats(queue)  # 404 for an unknown queue before the body is read
    envelope = await read_json(Envelope)
    refuse_when_draining(rt)  # again: a slow upload may end after the snapshot is written
    return json_response(*await publish_one(rt, queue, envelope))


@bp.post("/v1/queues/<queue>/messages/batch")
@requires("publish")
async def publish_batch(queue: str) -> Response:
    rt = runtime()
    refuse_when_draining(rt)
    rt.broker.cached_stats(queue)
    batch = await read_json(Batch)
    refuse_when_draining(rt)
    return json_response(*await publish_many(rt, queue, batch))


# What a publish does once its body is decoded: shared with the fast path (fastpath.py).
# The document is a value to encode, or bytes of JSON already written (common.encoded).
Answer = tuple[Any, int, dict[str, str] | None]


async def publish_one(rt: Runtime, queue: str, envelope: Envelope) -> Answer:
    (published,) = await rt.broker.publish(queue, [envelope])
    message = published.message
    if not published.created:
        return message.view(), 200, None
    rt.metrics.queues[queue].published.inc()
    return accepted_view(message), 202, {"Location": f"/v1/messages/{message.id}"}


async def publish_many(rt: Runtime, queue: str, batch: Batch) -> Answer:
    limit = rt.settings.server.max_batch
    if len(batch.messages) > limit:
        raise Invalid(
            f"messages: {len(batch.messages)} messages; server.max_batch allows {limit}",
            field="messages",
        )
    published = await rt.broker.publish(queue, batch.messages)
    created = sum(map(_created, published))  # C loops: a batch has a thousand
    if created:
        rt.metrics.queues[queue].published.inc(created)
    if created == len(published):
        return batch_answer(batch.messages, list(map(_message, published))), 202, None
    views = [accepted_view(p.message) if p.created else p.message.view() for p in published]
    return {"messages": views}, 202, None


@bp.get("/v1/messages/<message_id>")
@requires("publish", "read")
async def get_message(message_id: str) -> Response:
    rt = runtime()
    wait = query_seconds("wait", MAX_WAIT_S)
    if wait is None:
        message = await rt.broker.get(message_id)
    else:
        message = await rt.broker.wait(message_id, wait)
    return json_response(_known(message, message_id).view())


@bp.delete("/v1/messages/<message_id>")
@requires("admin")
async def cancel_message(message_id: str) -> Response:
    rt = runtime()
    message = await rt.broker.cancel(message_id)
    rt.metrics.queues[message.queue].processed["cancelled"].inc()
    return json_response(message.view())


def _known(message: Message | None, message_id: str) -> Message:
    if message is None:
        raise NotFound(f"message {message_id!r} is not known (or its result has expired)")
    return message
