"""The SQLite side of the sqlite journal: runs only on the journal's writer thread.

One row per message (its latest record), the paused queues, each queue's counts, and a
small meta table. The counts are kept by triggers on the messages table, so each outcome
is counted in the very commit that records it (a kill -9 can lose neither without the
other), with no extra statement on the hot path.
Every call here blocks; the asyncio side (sqlite.py) never calls it from the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import TypeVar

import msgspec

from ..errors import NotCommitted, StartupError
from ..model import Message
from .base import QueueCounts
from .records import decode_message

# 1: messages, paused, meta. 2: + counts and the triggers that keep them (a schema-1 file
# is migrated at open, its counts seeded from the messages it still holds).
SCHEMA_VERSION = 2
# Each outcome count, with the status a message moves to (a tuple: module-level constant).
_OUTCOME_STATUS = (
    ("succeeded", "succeeded"),
    ("retried", "retrying"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
)
_COUNTED = tuple(column for column, _ in _OUTCOME_STATUS)
# What `LocalState.moved` counts, as SQL: a new row is a publish; a row whose status
# changes to retrying / succeeded / failed / cancelled is one of those outcomes. An upsert
# that updates fires the UPDATE triggers only, and a re-write of the same status none. One
# plain UPDATE per outcome (its queue's row exists from the publish): measured, an UPSERT
# here halved the journal's update rate, these cost it about a tenth.
_COUNT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counts (queue TEXT PRIMARY KEY, "
    + ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in ("published", *_COUNTED))
    + ")",
    "CREATE TRIGGER IF NOT EXISTS count_published AFTER INSERT ON messages BEGIN "
    "INSERT INTO counts (queue, published) VALUES (new.queue, 1) "
    "ON CONFLICT (queue) DO UPDATE SET published = published + 1; END",
    *(
        f"CREATE TRIGGER IF NOT EXISTS count_{column} AFTER UPDATE OF status ON messages "
        f"WHEN new.status = '{status}' AND old.status IS NOT new.status BEGIN "
        f"UPDATE counts SET {column} = {column} + 1 WHERE queue = new.queue; END"
        for column, status in _OUTCOME_STATUS
    ),
)
# A schema-1 file knows no counts: every message it still holds was published, and each
# final one ended so (a lower bound, never fewer failures than dead letters).
_SEED_COUNTS = (
    "INSERT OR IGNORE INTO counts (queue, published, succeeded, retried, failed, cancelled) "
    "SELECT queue, count(*), sum(status = 'succeeded'), 0, sum(status = 'failed'), "
    "sum(status = 'cancelled') FROM messages GROUP BY queue"
)
Loaded = tuple[list[Message], list[str], dict[str, QueueCounts]]
# The WAL is truncated back to this after a checkpoint, so a burst does not leave it large.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# Give pages back to the file system once this share of the file is free (and at least
# FREE_PAGES_MIN pages): steady load reuses free pages, so this only follows a burst.
FREE_SHARE = 0.25
FREE_PAGES_MIN = 256
VACUUM_STEP_PAGES = 2048
# The health probe must be able to commit this much to call the journal writable again.
PROBE_BYTES = 64 * 1024
BUSY_TIMEOUT_MS = 5000

Row = tuple[str, str, str, bytes]  # id, queue, status, record

# 4 parameters a row; SQLite allows 32766 parameters in one statement.
ROWS_PER_STATEMENT = 500
_T = TypeVar("_T")


@functools.lru_cache(maxsize=64)  # module-level: the text depends on n alone
def _upsert_sql(n: int) -> str:
    """A multi-row upsert; a repeated id in one statement is fine: the later row wins."""
    return (
        "INSERT INTO messages (id, queue, status, record) VALUES "
        + ",".join(["(?, ?, ?, ?)"] * n)
        + " ON CONFLICT (id) DO UPDATE SET queue = excluded.queue, status = excluded.status, "
        "record = excluded.record"
    )


def _flat(rows: Sequence[Row]) -> list[str | bytes]:
    return list(chain.from_iterable(rows))  # a C loop: a batch's commit has thousands


def _chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def unavailable(exc: sqlite3.Error, path: Path) -> NotCommitted:
    """A failed write as the client sees it: 503 with Retry-After, the cause named."""
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return NotCommitted(
        f"the journal {str(path)!r} cannot take writes ({name}: {exc}); nothing was "
        "stored, retry later",
        retry_after=1,
    )


class Store:
    def __init__(self, path: Path, synchronous: str, max_pages: int | None) -> None:
        self.path = path
        self._synchronous = synchronous.upper()
        self._max_pages = max_pages
        self._conn: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "the store is not open"
        return self._conn

    def open(self) -> Loaded:
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            self._configure()
            return self._load()
        except sqlite3.Error as exc:
            self.close()
            raise StartupError(
                f"broker.sqlite_path: cannot open {str(self.path)!r} as a Spool journal: {exc}"
            ) from None

    def _configure(self) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StartupError(
                f"broker.sqlite_path: {str(self.path)!r} has journal schema {version}; this "
                f"Spool reads schema {SCHEMA_VERSION}"
            )
        if version == 0:
            # Only takes effect before the first table exists, i.e. on a new file.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StartupError(
                f"broker.sqlite_path: {str(self.path)!r} cannot use WAL mode (got {mode})"
            )
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        if self._max_pages is not None:
            conn.execute(f"PRAGMA max_page_count = {int(self._max_pages)}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS messages ("
            "id TEXT PRIMARY KEY, queue TEXT NOT NULL, status TEXT NOT NULL, record BLOB NOT NULL)"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS paused (queue TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)")
        for statement in _COUNT_SCHEMA:
            conn.execute(statement)
        if version < 2:
            conn.execute(_SEED_COUNTS)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")

    def _load(self) -> Loaded:
        messages: list[Message] = []
        for mid, record in self.conn.execute("SELECT id, record FROM messages ORDER BY id"):
            try:
                messages.append(decode_message(record))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise StartupError(
                    f"broker.sqlite_path: {str(self.path)!r} holds a corrupt record for "
                    f"message {mid!r} ({exc}); the file is left as it is"
                ) from None
        paused = [name for (name,) in self.conn.execute("SELECT queue FROM paused ORDER BY queue")]
        counts = {
            name: QueueCounts(published, *outcomes)
            for name, published, *outcomes in self.conn.execute(
                "SELECT queue, published, " + ", ".join(_COUNTED) + " FROM counts"
            )
        }
        return messages, paused, counts

    def commit(
        self, rows: Sequence[Row], paused: Sequence[str] | None, deletes: Sequence[str]
    ) -> None:
        """One transaction: upserts in order, then the paused set, then deletes.

        Few statements, many rows each: every statement hands the GIL to the busy event
        loop and waits to get it back, so statements, not rows, set the commit's latency.
        The common case (a few publishes) is one statement in autocommit: one step, COMMIT
        and fsync included."""
        conn = self.conn
        row_chunks = _chunks(rows, ROWS_PER_STATEMENT)
        if len(row_chunks) == 1 and paused is None and not deletes:
            conn.execute(_upsert_sql(len(rows)), _flat(rows))
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for chunk in row_chunks:
                conn.execute(_upsert_sql(len(chunk)), _flat(chunk))
            if paused is not None:
                conn.execute("DELETE FROM paused")
                conn.executemany("INSERT INTO paused (queue) VALUES (?)", [(q,) for q in paused])
            for ids in _chunks(deletes, ROWS_PER_STATEMENT * 4):
                marks = ",".join("?" * len(ids))
                conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
            conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise

    def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def probe(self) -> None:
        """Raises unless PROBE_BYTES can be committed (and then takes them back)."""
        stat = os.statvfs(self.path.parent)
        if stat.f_bavail * stat.f_frsize < PROBE_BYTES:
            raise sqlite3.OperationalError("database or disk is full (file system)")
        blob = sqlite3.Binary(bytes(PROBE_BYTES))
        try:
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?)", (blob,)
            )
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("DELETE FROM meta WHERE key = 'probe'")

    def shrink(self) -> bool:
        """One step of giving free pages back to the file system after a burst of deletes;
        True when another step is due."""
        conn = self.conn
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2 = INCREMENTAL
            return False  # a file made by something else: its free pages are reused only
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        total = conn.execute("PRAGMA page_count").fetchone()[0]
        if free < FREE_PAGES_MIN or free < total * FREE_SHARE:
            return False
        # executescript steps the pragma to the end; execute() would free a single page.
        conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES});")
        return bool(free > VACUUM_STEP_PAGES)

    def close(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self.rollback()
            self._conn.execute("PRAGMA optimize")
        self._conn.close()  # the last connection checkpoints and removes the WAL
        self._conn = None
