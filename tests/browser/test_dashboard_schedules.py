"""The dashboard's schedules panel in Debian's chromium: each schedule with its next run,
and pause / resume from the page reaching the server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from service.client import Client

from ..conftest import Server, toml_config
from ..live import start_server
from .test_dashboard import browser, page  # noqa: F401 - the fixtures, shared

if TYPE_CHECKING:
    from playwright.sync_api import Page

CONFIG = """
[queues.work]
handler = "tests.handlers:echo"

[schedules.nightly]
cron = "30 2 * * *"
timezone = "Europe/Berlin"
queue = "work"
"""


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dash-schedules")
    server = start_server(tmp, toml_config(tmp, CONFIG))
    yield server
    server.kill()


def test_the_schedules_panel_shows_next_runs_and_pauses(page: Page, scheduled: Server) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page.goto(scheduled.url)
    row = page.locator('#schedules-table tr[data-schedule="nightly"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("30 2 * * * (Europe/Berlin)")
    expect(row.locator('[data-k="next"]')).not_to_have_text("\u2013")  # the dash of "no time"
    row.get_by_role("button", name="Pause").click()
    expect(row.locator('[data-k="next"]')).to_have_text("paused")
    with Client(scheduled.url) as spool:
        assert spool.schedules()[0].paused
        row.get_by_role("button", name="Resume").click()
        expect(row.get_by_role("button", name="Pause")).to_be_visible()
        assert not spool.schedules()[0].paused
