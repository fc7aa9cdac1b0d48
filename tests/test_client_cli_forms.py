"""The command-line client's first minutes: the unreachable server's URL, timestamps in the
API's form in every output, and a bare word as a string body."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from service.client import Client, ConnectionFailed

from .conftest import Server, free_port, toml_config
from .live import start_server
from .test_client_cli import as_json, spool

# What the API writes (timestamps.rfc3339): milliseconds and Z, never microseconds or +00:00.
API_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TIME_KEYS = ("created_at", "scheduled_for", "started_at", "finished_at", "expires_at")
QUEUES = """
[queues.work]
handler = "tests.handlers:echo"

[queues.bad]
handler = "tests.handlers:fail"
max_retries = 0
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli-forms")
    server = start_server(tmp, toml_config(tmp, QUEUES))
    yield server
    server.kill()


def api_message(server: Server, message_id: str) -> dict[str, object]:
    doc: dict[str, object] = httpx.get(f"{server.url}/v1/messages/{message_id}").json()
    return doc


@pytest.mark.parametrize("base", ["", "/", "/prefix", "/prefix/"])
def test_the_unreachable_servers_url_keeps_its_slash_and_a_reason(base: str) -> None:
    root = f"http://127.0.0.1:{free_port()}"
    path = base.rstrip("/")
    done = spool(None, "queues", "--url", f"{root}{base}", "--timeout", "2")
    assert done.returncode == 6
    prefix = f"spool: GET {root}{path}/v1/queues: "
    assert done.stderr.startswith(prefix), done.stderr
    assert done.stderr.strip() != prefix.strip()  # the reason is never empty
    with Client(f"{root}{base}", timeout=2) as client, pytest.raises(ConnectionFailed) as caught:
        client.get("some-id")
    assert caught.value.detail.startswith(f"GET {root}{path}/v1/messages/some-id: ")


def test_json_output_writes_timestamps_as_the_api_does(server: Server) -> None:
    done = spool(server, "publish", "work", "1", "--wait", "20", "--json", token=None)
    assert done.returncode == 0, done.stderr
    printed = as_json(done)
    api = api_message(server, printed["id"])
    for key in TIME_KEYS:
        assert printed[key] == api[key], key
    assert API_TIME.fullmatch(printed["created_at"])
    assert API_TIME.fullmatch(printed["finished_at"])
    got = as_json(spool(server, "get", printed["id"], "--json", token=None))
    assert {k: got[k] for k in TIME_KEYS} == {k: api[k] for k in TIME_KEYS}


def test_publish_expires_sets_the_expiry_and_a_bad_one_is_a_usage_error(server: Server) -> None:
    done = spool(server, "publish", "work", "1", "--expires", "60", "--json", token=None)
    assert done.returncode == 0, done.stderr
    printed = as_json(done)
    assert printed["expires_at"] == api_message(server, printed["id"])["expires_at"]
    assert API_TIME.fullmatch(printed["expires_at"])
    refused = spool(server, "publish", "work", "1", "--delay", "5", "--expires", "2", token=None)
    assert refused.returncode == 2
    assert "expires_in_s" in refused.stderr


def test_tables_write_timestamps_as_the_api_does(server: Server) -> None:
    done = spool(server, "publish", "bad", "1", "--wait", "20", "--json", token=None)
    api = api_message(server, as_json(done)["id"])
    table = spool(server, "get", str(api["id"]), token=None)
    assert table.returncode == 0, table.stderr
    rows = dict(line.split(None, 1) for line in table.stdout.splitlines())
    for key in TIME_KEYS:
        assert rows[key] == (api[key] or "-"), key
    dead = spool(server, "dead", "bad", token=None)
    row = next(line for line in dead.stdout.splitlines() if line.startswith(str(api["id"])))
    assert row.split()[1] == api["finished_at"]


@pytest.mark.parametrize(
    ("argument", "body"),
    [
        ("hello", "hello"),
        ("hello world", "hello world"),
        ("ünïcode", "ünïcode"),
        ("nan", "nan"),
        ("42", 42),
        ('"42"', "42"),
        ("true", True),
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
    ],
)
def test_a_bare_word_is_published_as_a_string(server: Server, argument: str, body: object) -> None:
    done = spool(server, "publish", "work", argument, "--json", token=None)
    assert done.returncode == 0, done.stderr
    assert as_json(done)["body"] == body


@pytest.mark.parametrize("argument", ["{not json", "[1, 2", '"unclosed', "  {"])
def test_what_starts_as_json_must_be_json(server: Server, argument: str) -> None:
    done = spool(server, "publish", "work", argument, token=None)
    assert done.returncode == 2
    assert done.stderr.startswith("spool: the body is not valid JSON"), done.stderr
    assert "bare word" in done.stderr  # says how to send text
    assert done.stdout == ""
