"""The sqlite backend's storage: a write-ahead journal of every message under LocalBroker.

The asyncio queues stay the dispatch path; this journal commits each change before the
broker applies it (commits.py: a publish gets its 202 only after its COMMIT) and gives it
all back at the next start, even after a crash.

Group commit: every SQLite call runs on ONE writer thread that owns the connection. Callers
hand it rows and await a future; the thread takes everything that arrived while the
previous COMMIT ran and commits it as one transaction, then settles every future through
loop.call_soon_threadsafe. Under load one fsync covers many publishes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec

from ..errors import StartupError, Unavailable
from ..model import Message, Status
from .base import QueueCounts
from .file_lock import Lock
from .policy import give_back
from .records import encode_message
from .sqlite_jobs import Call, Job, Write, next_batch, raiser, resolve
from .sqlite_store import Loaded, Row, Store, unavailable
from .storage import Recovered

log = logging.getLogger(__name__)

_id, _queue, _status = attrgetter("id"), attrgetter("queue"), attrgetter("status")
# A plain str per status for the status column: `.value` is a descriptor call per row.
_STATUS_TEXT = {status: status.value for status in Status}


def rows(msgs: Sequence[Message]) -> list[Row]:
    """(id, queue, status, record) per message, the columns taken in C loops."""
    return list(
        zip(
            map(_id, msgs),
            map(_queue, msgs),
            map(_STATUS_TEXT.__getitem__, map(_status, msgs)),
            map(encode_message, msgs),
            strict=True,
        )
    )


# While the journal cannot write, the writer probes this often whether it can again.
PROBE_INTERVAL_S = 1.0


class SqliteJournal:
    """The sqlite Storage (storage.py). `write` returns once its rows are committed."""

    writes_each_change = True

    def __init__(
        self, path: Path, *, synchronous: str = "full", max_pages: int | None = None
    ) -> None:
        self.path = path
        self._store = Store(path, synchronous, max_pages)
        self._lock = Lock(path, "broker.sqlite_path", "the sqlite backend serves one node per file")
        self._cond = threading.Condition()
        self._jobs: list[Job] = []
        self._closing = False
        self._accepting = True  # False once close() has written the last rows
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused: list[str] = []
        self._counts: dict[str, QueueCounts] = {}  # as the last run left them
        self._error: str | None = None  # set while writes fail; cleared by the next commit
        self._shrink_more = False  # a burst of deletes left more free pages to give back
        self.commits = 0  # transactions committed (group commit: fewer than writes)

    # ------------------------------------------------------------------ the asyncio side
    async def open(self) -> list[Message]:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="spool-sqlite", daemon=True)
        self._thread.start()
        try:
            loaded: Loaded = await self._call(self._open)
        except BaseException:
            await self._stop()
            raise
        messages, self._paused, self._counts = loaded
        log.info("journal %s: %d messages recovered", self.path, len(messages))
        return messages

    async def load(self) -> Recovered:
        # A message the journal holds as `running` was cut short by a death: a graceful
        # stop writes it back as queued (close).
        messages = await self.open()
        return Recovered(messages, self.paused_queues(), crashed=True, counts=self._counts)

    def _open(self) -> Loaded:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except OSError as exc:
            raise StartupError(
                f"broker.sqlite_path: cannot use {str(self.path)!r}: {exc}"
            ) from None
        try:
            return self._store.open()
        except BaseException:
            self._lock.release()
            raise

    async def write(self, messages: Sequence[Message], forget: Sequence[str] = ()) -> None:
        # Encoded now, on the loop: the record is the message as it is at this call.
        await self._submit(rows(messages), None, forget)

    async def set_paused(self, queues: Sequence[str]) -> None:
        await self._submit([], list(queues))
        self._paused = list(queues)

    def paused_queues(self) -> list[str]:
        return list(self._paused)

    def health(self) -> dict[str, object]:
        error = self._error
        if self._thread is not None and not self._thread.is_alive():
            error = "the journal writer thread is not running"
        check: dict[str, object] = {"ok": error is None, "backend": "sqlite"}
        if error is not None:
            check["error"] = error
        return check

    async def close(
        self,
        messages: Iterable[Message],
        paused: Sequence[str],
        counts: dict[str, QueueCounts] | None = None,
    ) -> None:
        """What still runs was cut short by a stop, not by a crash: back to queued, no failure.
        The counts are in the journal already (each in its outcome's commit)."""
        cut = [msgspec.structs.replace(m) for m in messages if m.status is Status.RUNNING]
        for msg in cut:
            give_back(msg)
        try:
            await self._submit(rows(cut), list(paused))
        except Exception:
            log.exception("journal %s: the last write at stop failed", self.path)
        self._accepting = False
        await self._stop()

    async def _submit(
        self, rows: list[Row], paused: list[str] | None, deletes: Sequence[str] = ()
    ) -> None:
        assert self._loop is not None, "the journal is not open"
        if not self._accepting:
            raise Unavailable(
                "the service is shutting down; retry on the next start", retry_after=5
            )
        future = self._loop.create_future()
        with self._cond:
            self._jobs.append(Write(rows, paused, deletes, future))
            self._cond.notify()
        await future

    async def _call(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None
        future = self._loop.create_future()
        with self._cond:
            self._jobs.append(Call(fn, future))
            self._cond.notify()
        return await future

    async def _stop(self) -> None:
        try:
            await self._call(self._close_store)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify()
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join, 10)

    def _close_store(self) -> None:
        try:
            self._store.close()
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while True:
            with self._cond:
                idle = not self._jobs and not self._closing
                if idle and not (self._shrink_more and self._store.is_open):
                    self._cond.wait(PROBE_INTERVAL_S if self._error is not None else None)
                if self._closing and not self._jobs:
                    return
                jobs, self._jobs = next_batch(self._jobs)
            if not jobs:
                if self._error is not None and self._store.is_open:
                    self._probe()
                elif self._shrink_more and self._store.is_open:
                    self._shrink()
                continue
            self._process(jobs)

    def _process(self, jobs: list[Job]) -> None:
        if jobs and isinstance(jobs[0], Call):
            call = jobs[0]
            try:
                result = call.fn()
            except BaseException as exc:
                self._settle([call.future], raiser(exc))
            else:
                self._settle([call.future], None, result)
            return
        writes = [job for job in jobs if isinstance(job, Write)]
        rows = [row for job in writes for row in job.rows]
        deletes = [mid for job in writes for mid in job.deletes]
        paused = next((w.paused for w in reversed(writes) if w.paused is not None), None)
        try:
            self._store.commit(rows, paused, deletes)
        except sqlite3.Error as exc:
            self._failed(exc)
            self._settle([w.future for w in writes], partial(unavailable, exc, self.path))
            return
        except BaseException as exc:
            log.exception("journal %s: unexpected error in a commit", self.path)
            self._settle([w.future for w in writes], raiser(exc))
            return
        self.commits += 1
        self._recovered()
        self._settle([w.future for w in writes], None)
        if deletes:
            self._shrink()

    def _shrink(self) -> None:
        try:
            self._shrink_more = self._store.shrink()
        except sqlite3.Error as exc:
            self._shrink_more = False
            log.warning("journal %s: incremental vacuum failed: %s", self.path, exc)

    def _probe(self) -> None:
        try:
            self._store.probe()
        except (sqlite3.Error, OSError) as exc:
            log.debug("journal %s: still cannot write: %s", self.path, exc)
        else:
            self._recovered()

    def _failed(self, exc: sqlite3.Error) -> None:
        if self._error is None:
            log.error("journal %s: writes fail, publishing answers 503: %s", self.path, exc)
        self._error = f"{getattr(exc, 'sqlite_errorname', type(exc).__name__)}: {exc}"

    def _recovered(self) -> None:
        if self._error is not None:
            log.warning("journal %s: writes succeed again", self.path)
            self._error = None

    def _settle(
        self,
        futures: list[asyncio.Future[Any]],
        error: Callable[[], BaseException] | None,
        result: Any = None,
    ) -> None:
        if futures and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(resolve, futures, error, result)
