"""Schedules on a live `python -m service`, per-second cron (croniter's sixth field), on the
memory and sqlite backends: ticks publish keyed messages, GET /v1/schedules shows the last
and next run, pause and resume are admin-only and outlive a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from .live import start_server
from .waits import wait_until

ADMIN = {"Authorization": "Bearer admin-token"}
READ = {"Authorization": "Bearer read-token"}


def config(tmp_path: Path, backend: str) -> str:
    return f"""
[server]
graceful_timeout_s = 2

[broker]
backend = "{backend}"
snapshot_path = "{tmp_path / "snapshot.jsonl"}"
sqlite_path = "{tmp_path / "spool.db"}"

[auth]
tokens = ["admin:admin-token", "read:read-token"]

[queues.ticks]
handler = "tests.handlers:echo"

[schedules.every-second]
cron = "* * * * * *"
queue = "ticks"
body = {{ kind = "tick" }}
priority = 3
"""


def schedule(client: httpx.Client) -> dict[str, object]:
    r = client.get("/v1/schedules", headers=READ)
    assert r.status_code == 200, r.text
    [found] = r.json()["schedules"]
    assert isinstance(found, dict)
    return found


def parse(iso: object) -> datetime:
    assert isinstance(iso, str)
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_per_second_schedule_publishes_keyed_ticks_and_obeys_pause(
    tmp_path: Path, backend: str
) -> None:
    server = start_server(tmp_path, config(tmp_path, backend))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            wait_until(lambda: schedule(client)["last_run"] is not None, "a first tick")
            found = schedule(client)
            assert found["cron"] == "* * * * * *" and found["queue"] == "ticks"
            assert parse(found["next_run"]) > parse(found["last_run"])
            # The tick's message is on the queue under its key: a repeat answers with it.
            key = f"schedule:every-second:{found['last_run']}"
            r = client.post(
                "/v1/queues/ticks/messages",
                json={"body": {}, "idempotency_key": key},
                headers=ADMIN,
            )
            assert r.status_code == 200, r.text
            assert r.json()["priority"] == 3
            # Pause and resume need the admin scope.
            r = client.post("/v1/schedules/every-second/pause", headers=READ)
            assert r.status_code == 403
            assert r.headers["content-type"] == "application/problem+json"
            r = client.post("/v1/schedules/every-second/pause", headers=ADMIN)
            assert r.status_code == 200 and r.json()["paused"] is True
            assert r.json()["next_run"] is None
            paused_at = parse(r.json()["last_run"])
            assert client.post("/v1/schedules/nope/pause", headers=ADMIN).status_code == 404
    finally:
        server.stop()
    # Paused survives a restart, and two seconds of ticks pass without a run.
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert schedule(client)["paused"] is True
            resumes_after = datetime.now(UTC) + timedelta(seconds=2)
            wait_until(lambda: datetime.now(UTC) > resumes_after, "two paused seconds")
            assert parse(schedule(client)["last_run"]) == paused_at
            r = client.post("/v1/schedules/every-second/resume", headers=ADMIN)
            assert r.status_code == 200 and r.json()["paused"] is False
            wait_until(
                lambda: parse(schedule(client)["last_run"]) > resumes_after, "a tick after resume"
            )
            queue = client.get("/v1/queues/ticks", headers=READ).json()
            assert queue["counts"]["published"] >= 1
    finally:
        server.stop()
