"""`python -m service schedules|pause-schedule|resume-schedule` and the Python client's
schedules calls, against a live server with a schedule."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.client import Client, NotFound

from .conftest import Server, toml_config
from .live import start_server
from .test_client_cli import AUTH, READER, TOKEN, as_json, spool

QUEUES = """
[queues.work]
handler = "tests.handlers:echo"

[schedules.nightly]
cron = "30 2 * * *"
timezone = "Europe/Berlin"
queue = "work"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli-schedules")
    server = start_server(tmp, toml_config(tmp, QUEUES, AUTH))
    yield server
    server.kill()


def test_schedules_lists_each_schedule_with_its_next_run(server: Server) -> None:
    done = spool(server, "schedules")
    assert done.returncode == 0, done.stderr
    assert "nightly" in done.stdout and "Europe/Berlin" in done.stdout
    [found] = as_json(spool(server, "schedules", "--json"))
    assert found["name"] == "nightly" and found["last_run"] is None
    assert found["next_run"] is not None and found["paused"] is False


def test_pause_schedule_needs_admin_and_resume_schedule_undoes_it(server: Server) -> None:
    assert spool(server, "pause-schedule", "nightly", token=READER).returncode == 4
    assert spool(server, "pause-schedule", "nope").returncode == 3
    paused = as_json(spool(server, "pause-schedule", "nightly", "--json"))
    assert paused["paused"] is True and paused["next_run"] is None
    resumed = as_json(spool(server, "resume-schedule", "nightly", "--json"))
    assert resumed["paused"] is False


def test_the_python_client_reads_and_pauses_schedules(server: Server) -> None:
    with Client(server.url, token=TOKEN) as client:
        [found] = client.schedules()
        assert found.name == "nightly" and found.next_run is not None
        assert client.pause_schedule("nightly").paused
        assert not client.resume_schedule("nightly").paused
        with pytest.raises(NotFound):
            client.pause_schedule("nope")
