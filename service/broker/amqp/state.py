"""What the parts of one amqp node share: the current link to RabbitMQ, whether the node has
caught up with the events stream, and the last connection error. One object, handed to each
part that needs it, so no part reaches into another (or into the broker) for them."""

from __future__ import annotations

import asyncio

from ...config import QueueSettings
from ...errors import Unavailable, UnknownQueue
from .link import Link, redact

PUBLISH_WAIT_S = 2.0  # an API write waits this long for a connection, then answers 503


class NodeState:
    def __init__(self, url: str) -> None:
        self.shown_url = redact(url)  # for errors and /readyz: never the password
        self.link: Link | None = None
        # Set while `link` is up; writes wait on it (briefly) during a reconnect.
        self.connected = asyncio.Event()
        # Set once the replay of the event history at start reached this node's own marker:
        # until then the node takes no work (it does not yet know what was cancelled).
        self.caught_up = asyncio.Event()
        self.last_error = ""

    def attach(self, link: Link) -> None:
        self.link = link
        self.connected.set()

    def detach(self, link: Link | None = None) -> Link | None:
        """Forgets `link` (any link when None) if it is the current one; returns what it forgot."""
        current = self.link
        if current is None or (link is not None and current is not link):
            return None
        self.link = None
        self.connected.clear()
        return current

    def live_link(self) -> Link | None:
        """The current link if it can be used now, without waiting."""
        link = self.link
        return link if link is not None and link.usable else None

    async def usable_link(self, wait: float = PUBLISH_WAIT_S) -> Link:
        """The current link, waiting up to `wait` seconds for a reconnect; else a 503."""
        link = self.live_link()
        if link is not None:
            return link
        try:
            await asyncio.wait_for(self.connected.wait(), wait)
        except TimeoutError:
            raise Unavailable(
                f"RabbitMQ at {self.shown_url} is not reachable; try again shortly",
                retry_after=1,
            ) from None
        link = self.link
        if link is None:
            raise Unavailable("RabbitMQ is reconnecting; try again shortly", retry_after=1)
        return link


def queue_settings(queues: dict[str, QueueSettings], name: str) -> QueueSettings:
    try:
        return queues[name]
    except KeyError:
        raise UnknownQueue(f"queue {name!r} is not configured") from None
