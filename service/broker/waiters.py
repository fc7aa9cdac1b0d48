"""Long-poll waiters, keyed by message id: what `GET /v1/messages/{id}?wait=` sleeps on."""

from __future__ import annotations

import asyncio


class Waiters:
    """Futures per message id, woken by the broker when the message reaches what they await
    (a final status, or for amqp also becoming known), or all at once at a stop."""

    def __init__(self) -> None:
        self._by_id: dict[str, list[asyncio.Future[None]]] = {}

    async def wait(self, message_id: str, timeout: float) -> None:
        """Returns when woken or after `timeout` seconds, whichever comes first."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._by_id.setdefault(message_id, [])
        waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._by_id.pop(message_id, None)

    def wake(self, message_id: str) -> None:
        for fut in self._by_id.pop(message_id, ()):
            if not fut.done():
                fut.set_result(None)

    def wake_all(self) -> None:
        for message_id in list(self._by_id):
            self.wake(message_id)
