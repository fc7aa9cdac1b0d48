"""`[schedules.NAME]` tables: read with their defaults, and every bad one refused with one
line naming its key (config_schedules.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.config import load_settings
from service.errors import ConfigError

QUEUE = '[queues.q]\nhandler = "tests.handlers:echo"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_schedule_is_read_with_its_defaults(tmp_path: Path) -> None:
    text = QUEUE + '[schedules.nightly]\ncron = "0 3 * * *"\nqueue = "q"\n'
    schedule = load_settings(write(tmp_path, text), environ={}).schedules["nightly"]
    assert (schedule.cron, schedule.queue, schedule.timezone) == ("0 3 * * *", "q", "UTC")
    assert (schedule.body, schedule.priority, schedule.catch_up) == (None, 0, False)


def test_a_schedule_takes_every_key(tmp_path: Path) -> None:
    text = QUEUE + (
        '[schedules.report]\ncron = "*/5 * * * *"\nqueue = "q"\ntimezone = "Europe/Berlin"\n'
        'priority = 7\ncatch_up = true\nbody = { kind = "report", pages = [1, 2] }\n'
    )
    schedule = load_settings(write(tmp_path, text), environ={}).schedules["report"]
    assert schedule.timezone == "Europe/Berlin" and schedule.priority == 7 and schedule.catch_up
    assert schedule.body == {"kind": "report", "pages": [1, 2]}


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('cron = "61 * * * *"\nqueue = "q"\n', "schedules.s.cron: '61 * * * *' is not a valid"),
        ('cron = "* * *"\nqueue = "q"\n', "schedules.s.cron: '* * *' is not a cron expression"),
        (
            'cron = "* * * * *"\nqueue = "q"\ntimezone = "Mars/Olympus"\n',
            "schedules.s.timezone: 'Mars/Olympus' is not a time zone",
        ),
        ('cron = "* * * * *"\nqueue = "nope"\n', "schedules.s.queue: 'nope' is not a configured"),
        ('cron = "* * * * *"\n', "schedules.s.queue: required key is missing"),
        ('queue = "q"\n', "schedules.s.cron: required key is missing"),
        ('cron = "* * * * *"\nqueue = "q"\npriority = 10\n', "schedules.s.priority: expected an"),
        ('cron = "* * * * *"\nqueue = "q"\ncatchup = true\n', "did you mean 'catch_up'?"),
        (
            f'cron = "* * * * *"\nqueue = "q"\nbody = "{"x" * 1100}"\n',
            "schedules.s.body: 1102 bytes as JSON, more than server.max_body_bytes (1024)",
        ),
    ],
)
def test_a_bad_schedule_is_one_line_naming_its_key(tmp_path: Path, table: str, needle: str) -> None:
    text = "[server]\nmax_body_bytes = 1024\n" + QUEUE + "[schedules.s]\n" + table
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert needle in caught.value.detail
    assert "\n" not in caught.value.detail


def test_a_bad_schedule_name_is_refused(tmp_path: Path) -> None:
    text = QUEUE + '[schedules."Bad Name"]\ncron = "* * * * *"\nqueue = "q"\n'
    with pytest.raises(ConfigError, match=r"schedules\.Bad Name: schedule names must match"):
        load_settings(write(tmp_path, text), environ={})


def test_check_config_names_a_bad_cron_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, QUEUE + '[schedules.s]\ncron = "every day"\nqueue = "q"\n')
    done = subprocess.run(
        [sys.executable, "-m", "service", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "schedules.s.cron" in done.stderr and "Traceback" not in done.stderr
