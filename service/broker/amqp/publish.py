"""Publishing on the amqp backend: persistent messages, confirmed (with their events) before
the 202; a batch all or nothing; a full queue (RabbitMQ's reject-publish) is a 429."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Sequence

import aiormq

from ...config import QueueSettings
from ...errors import QueueFull, Unavailable
from ...model import Envelope, Message, Status, new_message
from ...tracing import Incoming
from .. import policy
from ..base import Published
from . import wire
from .figures import Figures
from .link import Link
from .node import Node
from .state import queue_settings
from .view import FINAL, NEW, version

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, node: Node, figures: Figures) -> None:
        self._node = node
        self._figures = figures
        # Idempotency keys whose publish is in flight on this node: a concurrent repeat
        # gets the same message.
        self._pending_keys: dict[tuple[str, str], Message] = {}

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], trace: Incoming | None = None
    ) -> list[Published]:
        qs = queue_settings(self._node.queues, queue)
        link = await self._node.state.usable_link()
        created_at = self._node.clock()
        out = policy.resolve_keys(
            envelopes,
            lambda key: self._pending_keys.get((queue, key)) or self._node.view.by_key(queue, key),
            lambda env: new_message(queue, env, created_at, trace),
        )
        fresh = [p.message for p in out if p.created]
        if not fresh:
            return out
        held = {(queue, m.idempotency_key): m for m in fresh if m.idempotency_key is not None}
        self._pending_keys.update(held)
        try:
            await self._publish_fresh(link, qs, queue, fresh)
        finally:
            for pair in held:
                self._pending_keys.pop(pair, None)
        return out

    async def _publish_fresh(
        self, link: Link, qs: QueueSettings, queue: str, fresh: list[Message]
    ) -> None:
        if len(fresh) > 1 or any(m.status is Status.SCHEDULED for m in fresh):
            # The broker's cap sees only the work queue: check the whole figure first.
            await self._figures.refresh_queue(link, queue)
            policy.check_room(queue, self._figures.waiting(queue), qs.max_size, len(fresh))
        now = self._node.clock()
        results = await asyncio.gather(
            *(wire.send(link, m, 0, now) for m in fresh), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            accepted = [
                m for m, r in zip(fresh, results, strict=True) if not isinstance(r, BaseException)
            ]
            await self._withdraw(link, accepted)
            for exc in failures:
                if isinstance(exc, asyncio.CancelledError):
                    raise exc
            if any(_refused(exc) for exc in failures):
                raise QueueFull(
                    f"queue {queue!r} is full ({qs.max_size} waiting messages); RabbitMQ "
                    "refused the publish",
                    retry_after=1,
                )
            raise Unavailable(
                f"RabbitMQ did not confirm the publish ({failures[0]!r}); try again",
                retry_after=1,
            )
        new = version(0, 0, NEW)
        try:
            await asyncio.gather(
                *(self._node.stream.emit(m, new, "published", link) for m in fresh)
            )
        except Exception:
            # The messages are held (confirmed): this node knows them, the others learn of
            # them when they run.
            for msg in fresh:
                self._node.view.apply(copy.copy(msg), new, "published")
            log.warning("recording a publish on the events stream failed", exc_info=True)

    async def _withdraw(self, link: Link, accepted: list[Message]) -> None:
        """Part of a batch got in: cancel those, so the batch is taken all or nothing."""
        for msg in accepted:
            policy.mark_cancelled(msg, self._node.clock())
            try:
                await self._node.stream.emit(msg, version(0, 0, FINAL), None, link)
            except Exception:
                log.warning("withdrawing message %s of a refused batch failed", msg.id)


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, aiormq.exceptions.DeliveryError) and not isinstance(
        exc, aiormq.exceptions.PublishError
    )
