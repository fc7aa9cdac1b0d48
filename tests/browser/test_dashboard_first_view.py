"""The dashboard's first view, before the events stream says anything (issue 16, item 2):
drawn from GET /v1/queues, the dead letters and each queue's rate history, so it is right
the moment the page opens, and its timestamps stay on one line.

The events stream is held (Playwright answers nothing for /v1/events), so whatever the page
shows comes from the REST calls made at load.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from service.client import Client

from ..conftest import Server, toml_config
from ..live import start_server
from ..rabbit import Rabbit, delete_spool_queues
from .test_dashboard import QUEUES, browser, card

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared

DEAD = 3
TWO_POINTS_OR_MORE = re.compile(r"^\S+(\s+\S+)+$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # the API's form
HISTORY_DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a past: successes in `work`, DEAD dead letters in `poison` (not the
    first queue), and a few seconds of rate history."""
    tmp = tmp_path_factory.mktemp("first-view")
    server = start_server(tmp, toml_config(tmp, QUEUES))
    with Client(server.url) as spool:
        for message in [spool.publish("work", i) for i in range(5)]:
            assert spool.wait(message.id, timeout=20).status == "succeeded"
        for message in [spool.publish("poison", {"n": i}) for i in range(DEAD)]:
            assert spool.wait(message.id, timeout=20).status == "failed"
    yield server
    server.kill()


def wait_for_history(server: Server, queue: str, samples: int) -> list[dict[str, Any]]:
    """The server's rate history of `queue` once it holds `samples` samples that show the
    work already done (polled, with a deadline)."""
    deadline = time.monotonic() + HISTORY_DEADLINE_S
    while True:
        answer = httpx.get(f"{server.url}/v1/queues/{queue}/history", timeout=5)
        got: list[dict[str, Any]] = answer.json().get("samples", []) if answer.is_success else []
        if len(got) >= samples and got[-1]["published"] > 0:
            return got
        assert time.monotonic() < deadline, f"no history for {queue}: {answer.text[:200]}"
        time.sleep(0.2)


def hold_the_stream(route: Route) -> None:
    """Leaves /v1/events unanswered: the page hears no event while the test looks."""


@pytest.fixture
def quiet(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.set_default_timeout(10_000)
    opened.route("**/v1/events*", hold_the_stream)
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


def test_first_view_shows_every_queue_and_the_dead_letters_before_any_event(
    quiet: Page, busy: Server
) -> None:
    from playwright.sync_api import expect

    listed = httpx.get(f"{busy.url}/v1/queues", timeout=5).json()["queues"]
    dead = httpx.get(f"{busy.url}/v1/queues/poison/dead?limit=100", timeout=5).json()
    quiet.goto(busy.url)
    expect(quiet.locator("article.queue h3")).to_have_text([q["name"] for q in listed])
    for queue in listed:
        shown = card(quiet, queue["name"])
        counts = queue["counts"]
        totals = f"{counts['published']} / {counts['succeeded']} / {counts['failed']}"
        expect(shown.locator('dd[data-k="totals"]')).to_have_text(totals)
        for status, count in queue["depth"].items():
            expect(shown.locator(f'td[data-k="{status}"]')).to_have_text(str(count))
    # The dead letters shown first are those of a queue that has some.
    expect(quiet.locator("#dead-empty")).to_be_hidden()
    expect(quiet.locator("#dead-queue")).to_have_value("poison")
    rows = quiet.locator("#dead-table tbody tr")
    expect(rows).to_have_count(DEAD)
    assert [rows.nth(i).get_attribute("data-id") for i in range(DEAD)] == [
        m["id"] for m in dead["messages"]
    ]
    # No event came (the stream is blocked), and the status says the figures are those
    # loaded, not a bare "connecting…" over figures that are already right.
    expect(quiet.locator("#conn")).to_contain_text("as of ")
    expect(quiet.locator("#conn")).to_contain_text("live updates connecting")


def test_charts_are_drawn_from_the_server_history_on_open(quiet: Page, busy: Server) -> None:
    from playwright.sync_api import expect

    history = wait_for_history(busy, "work", samples=3)
    quiet.goto(busy.url)
    chart = card(quiet, "work").locator("polyline.published")
    expect(chart).to_have_attribute("points", TWO_POINTS_OR_MORE)
    points = chart.get_attribute("points") or ""
    # As many rate points as the history has intervals (the page's one sample at load may
    # add one), not the single point a fresh tab would have.
    assert len(points.split()) >= len(history) - 1


def one_line(page: Page, selector: str) -> dict[str, Any]:
    """How `selector`'s text is laid out, measured by the browser: its white-space and how
    many line boxes the text takes. A list the page redraws meanwhile (the first view's
    dead letters, then the click's) can detach the cell found: measured again then."""
    deadline = time.monotonic() + 10
    while True:
        measured: dict[str, Any] = page.eval_on_selector(
            selector,
            """cell => {
                const range = document.createRange();
                range.selectNodeContents(cell);
                const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                return {whiteSpace: getComputedStyle(cell).whiteSpace, lines: tops.size,
                        text: cell.textContent, attached: cell.isConnected};
            }""",
        )
        if measured.pop("attached") or time.monotonic() > deadline:
            return measured
        time.sleep(0.05)


def test_timestamps_never_wrap_even_at_a_phones_width(browser: Browser, busy: Server) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    phone = context.new_page()
    phone.route("**/v1/events*", hold_the_stream)
    try:
        phone.goto(busy.url)
        card(phone, "poison").locator("button.show-dead").click()
        failed_at = "#dead-table tbody tr:first-child td:nth-child(2)"  # Failed at
        expect(phone.locator(failed_at)).to_have_text(TIMESTAMP)
        measured = one_line(phone, failed_at)
        assert measured["whiteSpace"] == "nowrap" and measured["lines"] == 1, measured

        first_dead = phone.locator("#dead-table tbody tr").first.get_attribute("data-id")
        phone.fill("#lookup-id", first_dead or "")
        phone.keyboard.press("Enter")
        for key in ("created", "started", "finished"):
            selector = f'#lookup-result dd[data-k="{key}"]'
            expect(phone.locator(selector)).to_have_text(TIMESTAMP)
            measured = one_line(phone, selector)
            assert measured["whiteSpace"] == "nowrap" and measured["lines"] == 1, measured
        overflow = phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    finally:
        context.close()


def test_history_answers_five_minutes_at_most_and_404_for_an_unknown_queue(busy: Server) -> None:
    doc = httpx.get(f"{busy.url}/v1/queues/work/history", timeout=5).json()
    assert doc["queue"] == "work" and doc["interval_s"] == 1 and doc["max_samples"] == 300
    assert 0 < len(doc["samples"]) <= 300
    times = [s["t"] for s in doc["samples"]]
    assert times == sorted(times)
    unknown = httpx.get(f"{busy.url}/v1/queues/nope/history", timeout=5)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")


def test_totals_say_what_they_cover_on_each_backend(
    quiet: Page, busy: Server, rabbit: Rabbit, tmp_path: Path
) -> None:
    """Counts are kept with the messages on memory and sqlite; on amqp they are derived from
    the events stream, so its cards say they cover only the events the stream still holds
    (issue 16, item 3: persisted, or labelled where they show)."""
    from playwright.sync_api import expect

    label = quiet.locator('article.queue[data-queue="work"] dt').filter(has_text="Published")
    quiet.goto(busy.url)  # memory
    expect(label).to_have_text("Published / succeeded / failed")
    queues = '[queues.work]\nhandler = "tests.handlers:echo"\n'
    amqp = f'backend = "amqp"\namqp_url = "{rabbit.url}"\n'
    server = start_server(
        tmp_path, toml_config(tmp_path, queues).replace("[broker]\n", f"[broker]\n{amqp}")
    )
    try:
        quiet.goto(server.url)
        expect(label).to_have_text("Published / succeeded / failed (events still on the stream)")
    finally:
        server.kill()
        # In a thread of its own: Playwright's sync API holds this thread's event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, delete_spool_queues(rabbit.url, ["work"])).result()
