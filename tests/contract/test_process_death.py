"""A process killed while it runs an attempt (SPEC "Attempts": a failure is an exception, a
timeout, or the process dying while it ran). Every backend that can know of the death
records it under one error type, `ProcessDied`.

This runs `python -m service` as users run it, so the death is a real `kill -9` of a live
server mid-attempt, not a hand-made journal or a mocked delivery: sqlite finds the attempt
`running` in its journal at the next start, amqp gets the unacked delivery back from
RabbitMQ. memory cannot know: it holds a message in the process only, so a `kill -9` loses
it (SPEC, README "Backends"). There the test asserts that documented loss instead, so this
test still fails if memory ever starts to claim a death it cannot have seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import Server, toml_config
from ..rabbit import delete_spool_queues
from ..waits import gate_body, started_ids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

QUEUE = "death"


@pytest.fixture
def clean_broker(broker_section: dict[str, Any]) -> Iterator[None]:
    yield
    if broker_section["backend"] == "amqp":  # the next test starts on an empty broker
        asyncio.run(delete_spool_queues(broker_section["amqp_url"], [QUEUE]))


def config(tmp_path: Path, broker_section: dict[str, Any]) -> str:
    broker = "\n".join(f'{key} = "{value}"' for key, value in broker_section.items())
    queue = (
        f'[queues.{QUEUE}]\nhandler = "tests.handlers:gate_async"\nmode = "async"\n'
        "max_retries = 1\nretry_backoff_s = 0\n"
    )
    return toml_config(tmp_path, queue, broker)


def wait_started(server: Server, path: Path, message_id: str, times: int) -> None:
    """Until the handler has begun attempt number `times`: the broker records an attempt as
    running before its handler starts, so from here a death must be counted."""
    deadline = time.monotonic() + 60
    while started_ids(path).count(message_id) < times:
        assert server.process is not None and server.process.poll() is None, server.log()
        assert time.monotonic() < deadline, f"attempt {times} never started:\n{server.log()}"
        time.sleep(0.02)


def fetch(server: Server, message_id: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/messages/{message_id}", params=params, timeout=30)


def test_a_kill_9_mid_attempt_is_a_failed_attempt_named_process_died(
    backend: str,
    broker_section: dict[str, Any],
    clean_broker: None,
    server_factory: Callable[..., Server],
    tmp_path: Path,
) -> None:
    body = gate_body(tmp_path, "release")
    started, release = Path(body["started"]), Path(body["release"])
    server = server_factory(config(tmp_path, broker_section))
    server.start()
    r = httpx.post(f"{server.url}/v1/queues/{QUEUE}/messages", json={"body": body}, timeout=30)
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    wait_started(server, started, mid, times=1)
    server.kill()  # SIGKILL to the whole process group, while the handler waits on its gate
    server.start()

    if backend == "memory":
        # Held in the process only: the death took the message with it, as documented. It is
        # neither known nor run again.
        assert fetch(server, mid).status_code == 404
        assert started_ids(started) == [mid]
        assert server.stop() == 0
        return

    # The death used one of the two attempts max_retries = 1 allows: it runs again, and
    # while it does the message carries the error of the attempt that died.
    wait_started(server, started, mid, times=2)
    doc = fetch(server, mid).json()
    assert doc["status"] == "running" and doc["attempts"] == 2, doc
    assert doc["error"]["type"] == "ProcessDied", doc
    server.kill()  # the second death uses the last attempt
    server.start()

    doc = fetch(server, mid, wait=20).json()
    assert doc["status"] == "failed", doc
    assert doc["attempts"] == 2
    assert doc["error"] == {
        "type": "ProcessDied",
        "message": "the process running this attempt stopped before it ended",
    }
    dead = httpx.get(f"{server.url}/v1/queues/{QUEUE}/dead", timeout=30).json()
    assert [m["id"] for m in dead["messages"]] == [mid]
    assert started_ids(started) == [mid, mid]  # dead-lettered, not run a third time
    release.touch()
    assert server.stop() == 0
