"""The sqlite journal's work list, between the event loop and the writer thread: a write
(rows to commit), a call (anything else the thread does), which of them one transaction
takes, and how their futures are settled back on the loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from .sqlite_store import Row

# One transaction takes whole write requests up to about this many record bytes, or this
# many deletes; later requests wait for the next one.
MAX_COMMIT_BYTES = 32 * 1024 * 1024
MAX_COMMIT_DELETES = 5000


@dataclasses.dataclass(slots=True)
class Write:
    rows: list[Row]
    paused: list[str] | None
    deletes: Sequence[str]
    future: asyncio.Future[None]


@dataclasses.dataclass(slots=True)
class Call:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


Job = Write | Call


def next_batch(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(what the next transaction takes, what stays queued): a run of writes up to
    MAX_COMMIT_BYTES or MAX_COMMIT_DELETES, or one call."""
    if jobs and isinstance(jobs[0], Call):
        return jobs[:1], jobs[1:]
    size = deletes = 0
    for n, job in enumerate(jobs):
        full = size > MAX_COMMIT_BYTES or deletes > MAX_COMMIT_DELETES
        if isinstance(job, Call) or (n and full):
            return jobs[:n], jobs[n:]
        size += sum(len(row[3]) for row in job.rows)
        deletes += len(job.deletes)
    return jobs, []


def resolve(
    futures: list[asyncio.Future[Any]], error: Callable[[], BaseException] | None, result: Any
) -> None:
    """On the loop: settle every future of a batch (one exception object per caller)."""
    for future in futures:
        if future.done():
            continue  # the caller was cancelled; the outcome stands regardless
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error())


def raiser(exc: BaseException) -> Callable[[], BaseException]:
    return lambda: exc
