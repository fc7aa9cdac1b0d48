"""Publish (one, batch), read (with long-poll), cancel."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from quart import Blueprint, Response, current_app

from ..broker.base import Broker
from ..broker.policy import expiry_problem
from ..errors import Invalid, NotFound
from ..metrics import Metrics
from ..model import Batch, Envelope, Message
from .answers import accepted_view, batch_answer
from .auth import requires
from .common import json_response, query_seconds, read_json, refuse_when_draining
from .services import broker, metrics, node, queue_directory

bp = Blueprint("messages", __name__)

MAX_WAIT_S = 60.0
_created, _message = attrgetter("created"), attrgetter("message")
_expires, _delay = attrgetter("expires_in_s"), attrgetter("delay_s")


PUBLISHER = "spool.publisher"

# What a publish answers: a document (a value to encode, or bytes of JSON already written:
# common.encoded), a status and extra headers.
Answer = tuple[Any, int, dict[str, str] | None]


class Publisher:
    """What a publish does once its body is decoded: shared by the routes below and the
    fast path (fastpath.py), so both do exactly the same."""

    __slots__ = ("_broker", "_expiries", "_metrics", "max_batch")

    def __init__(
        self, broker: Broker, metrics: Metrics, max_batch: int, expiries: dict[str, float]
    ) -> None:
        self._broker = broker
        self._metrics = metrics
        self.max_batch = max_batch
        self._expiries = expiries  # each queue's expires_in_s (0: none)

    def _check_expiry(self, queue: str, envelopes: Sequence[Envelope], batch: bool) -> None:
        """422 naming the field of the first envelope whose expiry would come before its
        delay is over. Two C loops when no envelope sets either (the usual publish)."""
        default = self._expiries.get(queue, 0.0)
        if not (any(map(_expires, envelopes)) or (default and any(map(_delay, envelopes)))):
            return
        for n, env in enumerate(envelopes):
            problem = expiry_problem(env, default)
            if problem is not None:
                field = f"messages[{n}].{problem[0]}" if batch else problem[0]
                raise Invalid(f"{field}: {problem[1]}", field=field)

    async def one(self, queue: str, envelope: Envelope) -> Answer:
        self._check_expiry(queue, (envelope,), False)
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
        self._check_expiry(queue, batch.messages, True)
        published = await self._broker.publish(queue, batch.messages)
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
