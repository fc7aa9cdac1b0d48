"""Long-poll waiters, keyed by message id: what `GET /v1/messages/{id}?wait=` sleeps on, and
`?wait_for=progress` and a publish's `Prefer: wait=N` too."""

from __future__ import annotations

import asyncio


class Waiters:
    """Futures per message id, woken by the broker when the message reaches what they await
    (a final status, or for amqp also becoming known), or all at once at a stop. Progress
    waiters are woken by those too, and also by each new progress report."""

    def __init__(self) -> None:
        self._by_id: dict[str, list[asyncio.Future[None]]] = {}
        self._progress: dict[str, list[asyncio.Future[None]]] = {}

    async def wait(self, message_id: str, timeout: float, *, progress: bool = False) -> None:
        """Returns when woken or after `timeout` seconds, whichever comes first."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        table = self._progress if progress else self._by_id
        waiters = table.setdefault(message_id, [])
        waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters and table.get(message_id) is waiters:
                del table[message_id]

    def wake(self, message_id: str) -> None:
        for fut in self._by_id.pop(message_id, ()):
            if not fut.done():
                fut.set_result(None)
        if self._progress:  # rarely anyone: one test of an empty dict
            self.wake_progress(message_id)

    def wake_progress(self, message_id: str) -> None:
        for fut in self._progress.pop(message_id, ()):
            if not fut.done():
                fut.set_result(None)

    def wake_all(self) -> None:
        for message_id in list(self._by_id):
            self.wake(message_id)
        for message_id in list(self._progress):
            self.wake_progress(message_id)
