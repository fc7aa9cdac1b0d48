"""Publishing on the amqp backend: persistent messages, confirmed (with their events) before
the 202; a batch all or nothing; a full queue (RabbitMQ's reject-publish) is a 429."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiormq

from ...errors import QueueFull, Unavailable
from ...model import Envelope, Message, Status, new_message
from ..base import Published
from .admin import refresh_queue, waiting
from .view import FINAL, NEW, version

if TYPE_CHECKING:
    from .broker import AmqpBroker
    from .link import Link

log = logging.getLogger(__name__)


async def publish(b: AmqpBroker, queue: str, envelopes: Sequence[Envelope]) -> list[Published]:
    b.queue(queue)
    link = await b.usable_link()
    created_at = b.clock()
    out: list[Published] = []
    fresh: list[Message] = []
    seen: dict[str, Message] = {}
    for env in envelopes:
        key = env.idempotency_key
        if key is not None:
            earlier = seen.get(key) or b.pending_keys.get((queue, key)) or b.view.by_key(queue, key)
            if earlier is not None:
                out.append(Published(earlier, created=False))
                continue
        msg = new_message(queue, env, created_at)
        if key is not None:
            seen[key] = msg
        fresh.append(msg)
        out.append(Published(msg, created=True))
    if not fresh:
        return out
    # Hold the keys while the publish is in flight, so a concurrent repeat on this node
    # gets the same message.
    held = {(queue, m.idempotency_key): m for m in fresh if m.idempotency_key is not None}
    b.pending_keys.update(held)
    try:
        await _publish_fresh(b, link, queue, fresh)
    finally:
        for pair in held:
            b.pending_keys.pop(pair, None)
    return out


async def _publish_fresh(b: AmqpBroker, link: Link, queue: str, fresh: list[Message]) -> None:
    qs = b.queue(queue)
    if len(fresh) > 1 or any(m.status is Status.SCHEDULED for m in fresh):
        # The broker's cap sees only the work queue: check the whole figure first.
        await refresh_queue(b, link, queue)
        room = qs.max_size - waiting(b, queue)
        if len(fresh) > room:
            raise QueueFull(
                f"queue {queue!r} has room for {max(0, room)} of {qs.max_size} waiting messages; "
                f"{len(fresh)} more do not fit",
                retry_after=1,
            )
    results = await asyncio.gather(*(b.send(link, m, 0) for m in fresh), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        accepted = [
            m for m, r in zip(fresh, results, strict=True) if not isinstance(r, BaseException)
        ]
        await _withdraw(b, link, accepted)
        for exc in failures:
            if isinstance(exc, asyncio.CancelledError):
                raise exc
        if any(_refused(exc) for exc in failures):
            raise QueueFull(
                f"queue {queue!r} is full ({qs.max_size} waiting messages); RabbitMQ refused "
                "the publish",
                retry_after=1,
            )
        raise Unavailable(
            f"RabbitMQ did not confirm the publish ({failures[0]!r}); try again", retry_after=1
        )
    try:
        await asyncio.gather(*(b.emit(m, version(0, 0, NEW), "published", link) for m in fresh))
    except Exception:
        # The messages are held (confirmed): this node knows them, the others learn of them
        # when they run.
        for msg in fresh:
            b.view.apply(copy.copy(msg), version(0, 0, NEW), "published")
        log.warning("recording a publish on the events stream failed", exc_info=True)


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, aiormq.exceptions.DeliveryError) and not isinstance(
        exc, aiormq.exceptions.PublishError
    )


async def _withdraw(b: AmqpBroker, link: Link, accepted: list[Message]) -> None:
    """Part of a batch got in: cancel those, so the batch is taken all or nothing."""
    for msg in accepted:
        msg.status, msg.finished_at = Status.CANCELLED, b.clock()
        try:
            await b.emit(msg, version(0, 0, FINAL), None, link)
        except Exception:
            log.warning("withdrawing message %s of a refused batch failed", msg.id)
