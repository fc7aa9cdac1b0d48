"""Tools for tests of the sqlite journal under the broker: hold its writer thread (as a
slow fsync would), make its file read-only under the running service, read its rows."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from service import Settings
from service.broker.local import LocalBroker
from service.broker.sqlite import SqliteJournal
from service.broker.sqlite_jobs import Write
from service.model import Envelope, Message, Status

Seen = list[tuple[str, Status]]


async def eventually(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def count_rows(path: Path, status: str | None = None) -> int:
    """Rows in the journal as a separate reader sees the file (of one status, if given)."""
    with sqlite3.connect(path) as conn:
        sql, args = "SELECT count(*) FROM messages", tuple[str, ...]()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (status,)
        count: int = conn.execute(sql, args).fetchone()[0]
    conn.close()
    return count


def disk_status(path: Path, mid: str) -> str | None:
    """The message's status as a separate reader sees the file (None: no row)."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT status FROM messages WHERE id = ?", (mid,)).fetchone()
    conn.close()
    return None if row is None else str(row[0])


def writes_waiting(journal: SqliteJournal) -> int:
    with journal._cond:
        return sum(isinstance(job, Write) for job in journal._jobs)


class Gate:
    """A call that holds the journal's writer thread until opened, as a slow fsync would:
    the writes submitted meanwhile queue behind it."""

    def __init__(self, journal: SqliteJournal) -> None:
        self.entered, self._opened = threading.Event(), threading.Event()

        def hold() -> None:
            self.entered.set()
            self._opened.wait(30)

        self._call = asyncio.ensure_future(journal._call(hold))

    async def open(self) -> None:
        self._opened.set()
        await self._call


@asynccontextmanager
async def writer_held(journal: SqliteJournal) -> AsyncIterator[None]:
    gate = Gate(journal)
    await eventually(gate.entered.is_set)
    try:
        yield
    finally:
        await gate.open()


async def read_only(journal: SqliteJournal, on: bool) -> None:
    """The file turns read-only under the running service (as root, chmod would not)."""
    sql = f"PRAGMA query_only = {int(on)}"
    await journal._call(lambda: journal._store.conn.execute(sql))


@asynccontextmanager
async def sqlite_broker(settings: Settings) -> AsyncIterator[tuple[LocalBroker, SqliteJournal]]:
    journal = SqliteJournal(Path(settings.broker.sqlite_path))
    broker = LocalBroker(settings.queues, settings.results, storage=journal)
    await broker.start()
    try:
        yield broker, journal
    finally:
        await broker.close()


async def publish(broker: LocalBroker, n: int = 1) -> list[Message]:
    published = await broker.publish("work", [Envelope(body=b"1") for _ in range(n)])  # type: ignore[arg-type]
    return [p.message for p in published]
