"""The sqlite journal's schema: its version, the counts table and the triggers that keep it,
and how an older file is carried to the current schema. Runs on the writer thread only."""

from __future__ import annotations

import sqlite3

# 1: messages, paused, meta. 2: + counts and the triggers that keep them (a schema-1 file
# is migrated at open, its counts seeded from the messages it still holds); records may
# carry expires_at and a message may be `expired`, counted beside the other outcomes.
# Schema 1 files open and are carried to 2 (their records read back without an expiry); a
# schema 2 file is refused by name by a Spool that reads 1, instead of failing on a record
# it cannot read.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (0, 1, SCHEMA_VERSION)  # 0: a new, empty file
# Each outcome count, with the status a message moves to (a tuple: module-level constant).
_OUTCOME_STATUS = (
    ("succeeded", "succeeded"),
    ("retried", "retrying"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("expired", "expired"),
)
COUNTED = tuple(column for column, _ in _OUTCOME_STATUS)
# What `LocalState.moved` counts, as SQL: a new row is a publish; a row whose status
# changes to retrying / succeeded / failed / cancelled / expired is one of those outcomes.
# An upsert that updates fires the UPDATE triggers only, and a re-write of the same status
# none. One plain UPDATE per outcome (its queue's row exists from the publish): measured,
# an UPSERT here halved the journal's update rate, these cost it about a tenth.
_COUNT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counts (queue TEXT PRIMARY KEY, "
    + ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in ("published", *COUNTED))
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
# A file without counts knows none: every message it still holds was published, and each
# final one ended so (a lower bound, never fewer failures than dead letters).
_SEED_COUNTS = (
    "INSERT OR IGNORE INTO counts (queue, published, succeeded, retried, failed, cancelled, "
    "expired) SELECT queue, count(*), sum(status = 'succeeded'), 0, sum(status = 'failed'), "
    "sum(status = 'cancelled'), sum(status = 'expired') FROM messages GROUP BY queue"
)


def create_tables(conn: sqlite3.Connection) -> None:
    """Every table and trigger of the current schema, inside the caller's transaction. What
    decides the migration is what the file holds, not its version alone: a file written
    while expiry and kept counts were built apart says 2 with either part missing."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS messages ("
        "id TEXT PRIMARY KEY, queue TEXT NOT NULL, status TEXT NOT NULL, record BLOB NOT NULL)"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS paused (queue TEXT PRIMARY KEY)")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(counts)")}
    if columns and "expired" not in columns:
        conn.execute("ALTER TABLE counts ADD COLUMN expired INTEGER NOT NULL DEFAULT 0")
    for statement in _COUNT_SCHEMA:
        conn.execute(statement)
    if not columns:  # counts are new to this file: seed them from what it holds
        conn.execute(_SEED_COUNTS)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
