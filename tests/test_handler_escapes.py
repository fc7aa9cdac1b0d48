"""BaseExceptions from handlers, over a real `python -m service` (memory backend).

SystemExit, KeyboardInterrupt, GeneratorExit or any other BaseException raised by a handler
fails that attempt, in every mode, and never ends the server; and should something still
reach the event loop (a stray callback calling sys.exit), the server persists what it holds
and says why it stopped.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, toml_config
from .handlers import BASE_EXCEPTIONS
from .shutdown_load import snapshot_lines

pytestmark = pytest.mark.slow

FINAL = {"succeeded", "failed", "cancelled"}

QUEUES = """
[executor]
processes = 1
[queues.held]
handler = "tests.handlers:echo"
[queues.exits_process]
handler = "tests.handlers:raise_base"
mode = "process"
max_retries = 0
[queues.exits_async]
handler = "tests.handlers:async_raise_base"
mode = "async"
max_retries = 0
[queues.exits_thread]
handler = "tests.handlers:raise_base"
mode = "thread"
max_retries = 0
[queues.after]
handler = "tests.handlers:echo"
mode = "process"
"""


def publish(client: httpx.Client, queue: str, body: Any) -> str:
    response = client.post(f"/v1/queues/{queue}/messages", json={"body": body})
    assert response.status_code == 202, response.text
    mid: str = response.json()["id"]
    return mid


def wait_final(server: Server, client: httpx.Client, mid: str) -> dict[str, Any]:
    """The message once final; fails at once, with the log, if the server has exited."""
    deadline = time.monotonic() + 30
    while True:
        assert server.process is not None
        code = server.process.poll()
        assert code is None, f"the server exited with {code}:\n{server.log()}"
        try:
            doc: dict[str, Any] = client.get(f"/v1/messages/{mid}", params={"wait": 1}).json()
        except httpx.TransportError:
            continue  # the poll above says whether the server is gone
        if doc["status"] in FINAL:
            return doc
        assert time.monotonic() < deadline, f"{mid} never final: {doc}"


def test_base_exceptions_in_handlers_fail_the_attempt_and_the_server_keeps_everything(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES))
    server.start()
    failed: dict[str, str] = {}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/v1/queues/held/pause").status_code == 200
        held = [publish(client, "held", {"n": n}) for n in range(5)]
        # The case first: sys.exit(3) in a process handler, then in an async one.
        for queue in ("exits_process", "exits_async", "exits_thread"):
            for kind in BASE_EXCEPTIONS:
                mid = publish(client, queue, {"raise": kind})
                done = wait_final(server, client, mid)
                assert done["status"] == "failed", (queue, kind, done)
                assert done["error"]["type"] == kind, (queue, kind, done)
                failed[mid] = kind
        # The process worker that raised them all still runs handlers.
        after = publish(client, "after", "still here")
        assert wait_final(server, client, after)["result"] == "still here"
        for mid in held:
            assert client.get(f"/v1/messages/{mid}").json()["status"] == "queued"
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text  # every consumer is alive
    log = server.log()
    assert "recording the outcome" not in log
    assert server.stop() == 0, server.log()
    records = {r["id"]: r for r in snapshot_lines(tmp_path / "snapshot.jsonl")}
    assert {records[mid]["status"] for mid in held} == {"queued"}
    for mid, kind in failed.items():
        assert records[mid]["status"] == "failed"
        assert records[mid]["error"]["type"] == kind


def test_sys_exit_reaching_the_loop_persists_what_is_held_and_logs_why(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queues = """
[queues.held]
handler = "tests.handlers:echo"
[queues.escape]
handler = "tests.handlers:async_exit_from_a_callback"
mode = "async"
# Its retry comes due at once: nothing may move it once the end has begun.
retry_backoff_s = 0
"""
    server = server_factory(toml_config(tmp_path, queues))
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/v1/queues/held/pause").status_code == 200
        held = [publish(client, "held", {"n": n}) for n in range(5)]
        escape = publish(client, "escape", None)
    code = server.wait_exit(30)
    log = server.log()
    assert code == 1, log  # a failure, not the status the stray sys.exit asked for
    assert "SystemExit" in log and "reached the event loop" in log, log
    records = {r["id"]: r for r in snapshot_lines(tmp_path / "snapshot.jsonl")}
    assert {records[mid]["status"] for mid in held} == {"queued"}
    # Its attempt counts as failed, like a crash's: a message that stops the server every
    # time it runs must not do so for ever.
    assert records[escape]["status"] == "retrying"
    assert records[escape]["error"]["type"] == "ProcessDied"


def test_ctrl_c_lets_a_running_process_handler_finish_as_any_graceful_stop_does(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """A terminal's Ctrl-C sends SIGINT to the whole process group, worker processes too:
    the server drains, so the worker must not take it as a KeyboardInterrupt of its own."""
    queues = """
[server]
graceful_timeout_s = 30
[executor]
processes = 1
[queues.cpu]
handler = "tests.handlers:sleep"
mode = "process"
max_retries = 0
"""
    server = server_factory(toml_config(tmp_path, queues))
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        mid = publish(client, "cpu", {"seconds": 2})
        deadline = time.monotonic() + 10
        while client.get("/v1/queues/cpu").json()["depth"]["running"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGINT)  # start_new_session: it leads its group
    assert server.wait_exit(40) == 0, server.log()
    records = {r["id"]: r for r in snapshot_lines(tmp_path / "snapshot.jsonl")}
    assert records[mid]["status"] == "succeeded", records[mid]
