"""Per-queue counts (published, succeeded, retried, failed, cancelled) outlive a restart with
the backend's state: the memory snapshot at a graceful stop, the sqlite journal even after a
kill -9 (counted in the commit of the outcome). A restarted node must never show fewer
failures than the dead letters it still holds (issue 16, item 3).
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.client import Client

from .conftest import Server, toml_config

QUEUES = """
[queues.work]
handler = "tests.handlers:echo"

[queues.broken]
handler = "tests.handlers:fail"
max_retries = 1
retry_backoff_s = 0.01
retry_backoff_max_s = 0.01
"""

SQLITE = {"SPOOL_BROKER__BACKEND": "sqlite"}


def counts_of(server: Server, queue: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{server.url}/v1/queues/{queue}", timeout=5).json()
    return doc


def make_history(server: Server) -> None:
    """3 successes in `work`, 2 dead letters in `broken` (each retried once)."""
    with Client(server.url) as spool:
        done = [spool.publish("work", i) for i in range(3)]
        dead = [spool.publish("broken", i) for i in range(2)]
        for message in done:
            assert spool.wait(message.id, timeout=20).status == "succeeded"
        for message in dead:
            assert spool.wait(message.id, timeout=20).status == "failed"


def assert_history_kept(server: Server) -> None:
    work, broken = counts_of(server, "work"), counts_of(server, "broken")
    assert work["counts"] == {
        "published": 3,
        "succeeded": 3,
        "retried": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert broken["depth"]["dead"] == 2
    assert broken["counts"] == {
        "published": 2,
        "succeeded": 0,
        "retried": 2,
        "failed": 2,
        "cancelled": 0,
    }
    listed = httpx.get(f"{server.url}/v1/queues", timeout=5).json()["queues"]
    for queue in listed:
        assert queue["counts"]["failed"] >= queue["depth"]["dead"], queue


def test_memory_counts_survive_a_graceful_restart(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES))
    server.start()
    make_history(server)
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    server.start()
    assert_history_kept(server)


@pytest.mark.parametrize("stop", ["graceful", "kill -9"])
def test_sqlite_counts_survive_a_restart(
    server_factory: Callable[..., Server], tmp_path: Path, stop: str
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES), env=SQLITE)
    server.start()
    make_history(server)
    if stop == "graceful":
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
    else:
        server.kill()
    server.start()
    assert_history_kept(server)


def old_schema_journal(path: Path, server: Server) -> None:
    """A journal as Spool wrote it before counts were kept (schema 1): made by this Spool,
    then taken back to schema 1 (no counts table, no triggers, user_version 1)."""
    server.start()
    make_history(server)
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    conn = sqlite3.connect(path)
    try:
        triggers = [
            n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        for name in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DROP TABLE IF EXISTS counts")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    finally:
        conn.close()


def test_an_old_schema_journal_opens_with_counts_at_least_its_dead_letters(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES), env=SQLITE)
    old_schema_journal(tmp_path / "spool.db", server)
    server.start()
    broker = counts_of(server, "broken")
    assert broker["depth"]["dead"] == 2
    # What an old file can tell: every message it still holds was published, and each
    # dead letter failed; counting goes on from there.
    assert broker["counts"]["failed"] == 2 and broker["counts"]["published"] == 2
    assert counts_of(server, "work")["counts"]["succeeded"] == 3
    with Client(server.url) as spool:
        assert spool.wait(spool.publish("work", 9).id, timeout=20).status == "succeeded"
    assert counts_of(server, "work")["counts"]["published"] == 4
    server.kill()
    server.start()
    assert counts_of(server, "work")["counts"]["succeeded"] == 4
    version = sqlite3.connect(tmp_path / "spool.db").execute("PRAGMA user_version").fetchone()
    assert version[0] == 2
