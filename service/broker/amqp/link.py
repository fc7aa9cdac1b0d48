"""One connection to RabbitMQ with its channels, declared topology and consumers.

A Link is replaced whole when its connection drops: deliveries taken through an old link
cannot be acked on the new one (RabbitMQ redelivers them), so every delivery remembers the
link it came through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
    ConsumerTag,
)

from ...config import QueueSettings, ResultsSettings
from . import topology

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
EVENTS_PREFETCH = 500
# AMQP errors that mean "the connection or channel is gone", not "RabbitMQ said no".
LINK_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
    RuntimeError,
)
Callback = Callable[[AbstractIncomingMessage], Awaitable[None]]


def redact(url: str) -> str:
    """The URL without its password, for logs and /readyz."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Link:
    def __init__(self, ident: int, connection: AbstractConnection) -> None:
        self.ident = ident
        self.connection = connection
        self.closed = asyncio.Event()
        self.publisher: AbstractChannel | None = None
        self.probe: AbstractChannel | None = None
        self.work: dict[str, tuple[AbstractChannel, list[AbstractQueue]]] = {}
        self.tags: dict[str, list[tuple[AbstractQueue, ConsumerTag]]] = {}
        connection.close_callbacks.add(self._on_close)

    def _on_close(self, *_: Any) -> None:
        """The connection, or a channel it cannot work without, closed: the link is done
        (RabbitMQ closes a channel on a channel error, e.g. a queue deleted under it)."""
        self.closed.set()

    @property
    def usable(self) -> bool:
        return not self.closed.is_set() and not self.connection.is_closed

    @classmethod
    async def open(cls, ident: int, url: str) -> Link:
        connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_S)
        link = cls(ident, connection)
        try:
            link.publisher = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            link.publisher.close_callbacks.add(link._on_close)
            link.probe = await connection.channel(publisher_confirms=False)
        except BaseException:
            await connection.close()
            raise
        return link

    async def declare(self, queues: dict[str, QueueSettings], results: ResultsSettings) -> None:
        assert self.publisher is not None
        ch = self.publisher
        await ch.declare_queue(
            topology.EVENTS,
            durable=True,
            arguments=topology.events_args(results.ttl_s, results.max_entries),
        )
        for name, qs in queues.items():
            await ch.declare_queue(
                topology.work(name), durable=True, arguments=topology.work_args(qs.max_size)
            )
            await ch.declare_queue(topology.due(name), durable=True, arguments=topology.due_args())
            await ch.declare_queue(
                topology.dead(name),
                durable=True,
                arguments=topology.dead_args(results.max_entries),
            )
            await ch.declare_queue(
                topology.state(name), durable=True, arguments=topology.state_args()
            )
            for step in range(topology.LADDER_STEPS):
                await ch.declare_queue(
                    topology.wait(name, step),
                    durable=True,
                    arguments=topology.wait_args(name, step),
                )

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        priority: int = 0,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Returns once RabbitMQ confirmed it; DeliveryError when it refused (a full queue)."""
        assert self.publisher is not None
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=priority,
            content_type="application/json",
            headers=headers or {},
        )
        await self.publisher.default_exchange.publish(message, routing_key=routing_key)

    async def consume_events(self, offset: int | str, callback: Callback) -> None:
        channel = await self.connection.channel(publisher_confirms=False)
        channel.close_callbacks.add(self._on_close)
        await channel.set_qos(prefetch_count=EVENTS_PREFETCH)
        queue = await channel.declare_queue(topology.EVENTS, passive=True)
        await queue.consume(callback, arguments={"x-stream-offset": offset})

    async def open_work(self, name: str, prefetch: int) -> None:
        channel = await self.connection.channel(publisher_confirms=False)
        channel.close_callbacks.add(self._on_close)
        # global_: the prefetch is shared by the work and due queues of this channel.
        await channel.set_qos(prefetch_count=prefetch, global_=True)
        queues = [
            await channel.declare_queue(topology.work(name), passive=True),
            await channel.declare_queue(topology.due(name), passive=True),
        ]
        self.work[name] = (channel, queues)

    async def start_consuming(self, name: str, callback: Callback) -> None:
        if self.tags.get(name):
            return
        _, queues = self.work[name]
        self.tags[name] = [(q, await q.consume(callback, no_ack=False)) for q in queues]

    async def stop_consuming(self, name: str) -> None:
        for queue, tag in self.tags.pop(name, []):
            await queue.cancel(tag)

    async def depth(self, name: str) -> int:
        """Ready messages in one queue, from a passive declare."""
        if self.probe is None or self.probe.is_closed:
            self.probe = await self.connection.channel(publisher_confirms=False)
        queue = await self.probe.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        return int(count or 0)

    async def close(self) -> None:
        if not self.connection.is_closed:
            await self.connection.close()
        self.closed.set()
