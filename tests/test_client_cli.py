"""`python -m service publish|get|queues|dead|redrive|pause|resume` as a subprocess against a
live server: tables, --json output and the documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ROOT, Server, free_port, toml_config
from .live import start_server

TOKEN = "cli-admin"
READER = "cli-reader"
QUEUES = """
[queues.work]
handler = "tests.handlers:echo"

[queues.bad]
handler = "tests.handlers:fail"
max_retries = 0

[queues.tiny]
handler = "tests.handlers:echo"
max_size = 1
"""
AUTH = f'[auth]\ntokens = ["admin:{TOKEN}", "read:{READER}"]\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli")
    server = start_server(tmp, toml_config(tmp, QUEUES, AUTH))
    yield server
    server.kill()


def spool(
    server: Server | None, *args: str, token: str | None = TOKEN, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the CLI with SPOOL_URL / SPOOL_TOKEN from the environment, as a script would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env["SPOOL_URL"] = server.url if server else f"http://127.0.0.1:{free_port()}"
    if token:
        env["SPOOL_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def test_publish_and_wait_prints_the_message_and_exits_0(server: Server) -> None:
    done = spool(server, "publish", "work", '{"a": [1, 2]}', "--wait", "20", "--json")
    assert done.returncode == 0, done.stderr
    message = as_json(done)
    assert message["status"] == "succeeded" and message["result"] == {"a": [1, 2]}
    table = spool(server, "get", message["id"])
    assert table.returncode == 0
    assert "status         succeeded" in table.stdout and message["id"] in table.stdout


def test_publish_reads_the_body_from_stdin(server: Server) -> None:
    done = spool(server, "publish", "work", "-", "--json", stdin='"from stdin"')
    assert done.returncode == 0, done.stderr
    assert as_json(done)["body"] == "from stdin"


def test_a_failed_message_exits_1(server: Server) -> None:
    done = spool(server, "publish", "bad", "1", "--wait", "20", "--json")
    assert done.returncode == 1
    assert as_json(done)["error"]["type"] == "ValueError"


def test_wait_running_out_exits_7(server: Server) -> None:
    done = spool(server, "publish", "work", "1", "--delay", "60", "--wait", "0.3", "--json")
    assert done.returncode == 7
    assert as_json(done)["status"] == "scheduled"


def test_usage_and_invalid_requests_exit_2(server: Server) -> None:
    assert spool(server, "publish", "work", "{not json").returncode == 2
    invalid = spool(server, "publish", "work", "1", "--priority", "12")
    assert invalid.returncode == 2 and "priority" in invalid.stderr
    assert spool(server, "publish").returncode == 2  # argparse: missing arguments


def test_unknown_queue_or_message_exits_3(server: Server) -> None:
    assert spool(server, "publish", "nope", "1").returncode == 3
    missing = spool(server, "get", "0190b6e4-0000-7000-8000-000000000000")
    assert missing.returncode == 3 and "not known" in missing.stderr


def test_missing_or_weak_token_exits_4(server: Server) -> None:
    assert spool(server, "queues", token=None).returncode == 4
    assert spool(server, "queues", token="wrong").returncode == 4
    assert spool(server, "pause", "work", token=READER).returncode == 4
    explicit = spool(server, "queues", "--token", READER, "--json", token=None)
    assert explicit.returncode == 0


def test_a_full_queue_exits_5(server: Server) -> None:
    assert spool(server, "pause", "tiny").returncode == 0
    try:
        first = spool(server, "publish", "tiny", "1", "--json")
        assert first.returncode == 0
        full = spool(server, "publish", "tiny", "2", "--retries", "0")
        assert full.returncode == 5 and "do not fit" in full.stderr
    finally:
        assert spool(server, "resume", "tiny").returncode == 0


def test_an_unreachable_server_exits_6() -> None:
    done = spool(None, "queues", "--timeout", "2")
    assert done.returncode == 6 and "spool:" in done.stderr


def test_queues_as_a_table_and_as_json(server: Server) -> None:
    table = spool(server, "queues")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["QUEUE", "PAUSED", "CONSUMERS"]
    assert [line.split()[0] for line in lines[1:]] == ["work", "bad", "tiny"]
    flag = spool(None, "queues", "--url", server.url, "--json")  # --url wins over SPOOL_URL
    assert flag.returncode == 0, flag.stderr
    docs = as_json(spool(server, "queues", "--json"))
    assert [q["name"] for q in docs] == ["work", "bad", "tiny"]
    assert set(docs[0]["depth"]) == {"scheduled", "queued", "running", "retrying", "dead"}


def test_pause_and_resume(server: Server) -> None:
    assert as_json(spool(server, "pause", "work", "--json"))["paused"] is True
    resumed = spool(server, "resume", "work").stdout.splitlines()
    assert resumed[1].split()[:2] == ["work", "no"]
    assert as_json(spool(server, "queues", "--json"))[0]["paused"] is False


def test_dead_letters_and_redrive(server: Server) -> None:
    failed = as_json(spool(server, "publish", "bad", '{"n": 1}', "--wait", "20", "--json"))
    dead = spool(server, "dead", "bad")
    assert dead.returncode == 0
    assert dead.stdout.splitlines()[0].split() == [
        "ID",
        "FAILED",
        "AT",
        "ATTEMPTS",
        "ERROR",
        "MESSAGE",
    ]
    assert failed["id"] in dead.stdout and "ValueError" in dead.stdout
    page = as_json(spool(server, "dead", "bad", "--json", "--limit", "1"))
    assert len(page["messages"]) == 1 and set(page) == {"messages", "next_cursor"}
    one = as_json(spool(server, "redrive", "bad", failed["id"], "unknown-id", "--json"))
    assert one == {"redriven": 1, "skipped": ["unknown-id"]}
    waited = spool(server, "get", failed["id"], "--json")
    assert as_json(waited)["id"] == failed["id"]
    everything = spool(server, "redrive", "bad")
    assert everything.returncode == 0 and everything.stdout.startswith("redriven ")
