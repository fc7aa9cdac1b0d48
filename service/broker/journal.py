"""The Journal Protocol: durable storage under the node-local broker (the sqlite backend),
and the helper that lets a commit finish even when its caller goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from ..model import Message

_T = TypeVar("_T")


class Journal(Protocol):
    """Durable storage under a LocalBroker."""

    async def open(self) -> list[Message]: ...

    async def write(self, messages: Sequence[Message], forget: Sequence[str] = ()) -> None:
        """Store `messages` as they are at this call and delete the `forget` ids, in one
        transaction; returns only once it is committed, raises if it is not."""

    async def close(self, messages: Iterable[Message], paused: Sequence[str]) -> None: ...

    def paused_queues(self) -> list[str]: ...

    async def set_paused(self, queues: Sequence[str]) -> None: ...

    def health(self) -> dict[str, object]: ...


async def to_the_end(work: Coroutine[Any, Any, _T]) -> _T:
    """Await `work` in its own task, shielded: if the caller is cancelled (a client went
    away), a commit already handed to the journal still lands or rolls back in full."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the caller may be gone: mark the outcome as seen
