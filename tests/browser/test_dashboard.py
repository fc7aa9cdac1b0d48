"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by Playwright),
against a live `python -m service`.

Skips with the reason when Chromium or Playwright is missing, unless SPOOL_REQUIRE_BROWSER=1
(set by .ci/run once it has installed them). SPOOL_UPDATE_SCREENSHOT=1 refreshes
tests/browser/dashboard.png, the picture the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from service.client import Client

from ..conftest import Server, toml_config
from ..live import start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).with_name("dashboard.png")
MEASURED = re.compile(r"^[\d.]+ m?s / [\d.]+ m?s$")  # p50 / p95, e.g. "0.41 ms / 2.10 ms"
LIVE_MS = 10_000  # how long the page may take to show what the stream says
ADMIN, READ = "dash-admin", "dash-read"
QUEUES = """
[queues.work]
handler = "tests.handlers:echo"
concurrency = 2

[queues.poison]
handler = "tests.handlers:poison"
max_retries = 0

[queues.reports]
handler = "tests.handlers:async_echo"
mode = "async"
"""


def _playwright() -> Any:
    reason = ""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright for Python is not installed (pip install playwright)"
    if not reason and not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if reason:
        if os.environ.get("SPOOL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SPOOL_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    sync_playwright = _playwright()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dash")
    server = start_server(tmp, toml_config(tmp, QUEUES))
    yield server
    server.kill()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dash-auth")
    auth = f'[auth]\ntokens = ["admin:{ADMIN}", "read:{READ}"]\n'
    server = start_server(tmp, toml_config(tmp, QUEUES, auth))
    yield server
    server.kill()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.set_default_timeout(LIVE_MS)
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


def card(page: Page, queue: str) -> Any:
    return page.locator(f'article.queue[data-queue="{queue}"]')


def test_page_shows_queues_and_follows_them_live(page: Page, server: Server) -> None:
    from playwright.sync_api import expect

    page.goto(server.url)
    expect(page.locator("article.queue h3")).to_have_text(["work", "poison", "reports"])
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator('#node dd[data-k="backend"]')).to_have_text("memory")
    work = card(page, "work")
    with Client(server.url) as spool:
        spool.pause("work")
        for i in range(3):
            spool.publish("work", {"i": i})
        expect(work.locator('td[data-k="queued"]')).to_have_text("3")
        expect(work.locator(".badge.paused")).to_be_visible()
        spool.resume("work")
        expect(work.locator('td[data-k="queued"]')).to_have_text("0")
        expect(work.locator('dd[data-k="totals"]')).to_have_text("3 / 3 / 0")
        expect(work.locator('dd[data-k="processing"]')).to_have_text(MEASURED)
        points = work.locator("polyline.published").get_attribute("points")
        assert points and len(points.split()) >= 2  # the rate chart draws


def left_dead_letters(spool: Client, message_id: str, timeout: float = 15) -> None:
    """Waits until the server no longer holds the message as a dead letter."""
    deadline = time.monotonic() + timeout
    while spool.get(message_id).status == "failed":
        assert time.monotonic() < deadline, f"{message_id} was not redriven"
        time.sleep(0.05)


def test_a_failed_message_is_redriven_from_the_page(
    page: Page, server: Server, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    marker = tmp_path / "healed"
    page.goto(server.url)
    with Client(server.url) as spool:
        message = spool.publish("poison", {"marker": str(marker)})
        assert spool.wait(message.id, timeout=20).status == "failed"
        button = card(page, "poison").locator("button.show-dead")
        expect(button).to_have_text("Dead letters (1)")
        button.click()
        row = page.locator(f'#dead-table tr[data-id="{message.id}"]')
        expect(row).to_contain_text("ValueError")
        expect(row).to_contain_text("poison message")
        marker.write_text("the cause is fixed")
        row.get_by_role("button", name=f"Redrive {message.id}").click()
        left_dead_letters(spool, message.id)  # the click's request lands asynchronously
        done = spool.wait(message.id, timeout=20)
        assert done.status == "succeeded" and done.result == "healed"
        expect(row).to_have_count(0)
        expect(page.locator("#dead-empty")).to_be_visible()
        later = tmp_path / "later"
        again = spool.publish("poison", {"marker": str(later)})
        live_row = page.locator(f'#dead-table tr[data-id="{again.id}"]')
        expect(live_row).to_contain_text("ValueError")  # the open list follows by itself
        later.write_text("fixed too")
        page.get_by_role("button", name="Redrive all").click()
        left_dead_letters(spool, again.id)
        assert spool.wait(again.id, timeout=20).status == "succeeded"
        expect(live_row).to_have_count(0)

        page.fill("#lookup-id", message.id)
        page.keyboard.press("Enter")
        expect(page.locator('#lookup-result dd[data-k="status"]')).to_have_text("succeeded")
        expect(page.locator('#lookup-result dd[data-k="attempts"]')).to_have_text("1")
        expect(page.locator('#lookup-result dd[data-k="result"]')).to_contain_text("healed")


def test_pause_and_resume_from_the_page_reach_the_server(page: Page, server: Server) -> None:
    from playwright.sync_api import expect

    page.goto(server.url)
    button = card(page, "reports").get_by_role("button", name="Pause")
    button.focus()
    page.keyboard.press("Enter")  # keyboard, as a person without a mouse would
    resume = card(page, "reports").get_by_role("button", name="Resume")
    expect(resume).to_be_visible()
    with Client(server.url) as spool:
        assert spool.queue("reports").paused
        resume.click()
        expect(card(page, "reports").get_by_role("button", name="Pause")).to_be_visible()
        assert not spool.queue("reports").paused


def test_the_page_reconnects_after_a_restart(
    page: Page, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    restarted = server_factory(toml_config(tmp_path, QUEUES))
    restarted.start()
    page.goto(restarted.url)
    expect(page.locator("#conn")).to_have_text("live")
    assert restarted.stop() == 0
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    restarted.start()  # same port: the page finds it again by itself
    expect(page.locator("#conn")).to_have_text("live", timeout=20_000)
    with Client(restarted.url) as spool:
        spool.pause("work")
        spool.publish("work", 1)
    expect(card(page, "work").locator('td[data-k="queued"]')).to_have_text("1")


def test_the_page_fits_a_phone(browser: Browser, server: Server) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    phone = context.new_page()
    try:
        phone.goto(server.url)
        expect(phone.locator("article.queue")).to_have_count(3)
        overflow = phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        for field in ("#lookup-id", "#dead-queue"):  # every control has a label
            assert phone.locator(f'label[for="{field[1:]}"]').count() == 1
    finally:
        context.close()


def test_token_prompt_and_a_read_only_token_cannot_pause(page: Page, secured: Server) -> None:
    from playwright.sync_api import expect

    page.goto(secured.url)
    expect(page.locator("#token-panel")).to_be_visible()
    page.get_by_label("API token").fill("not-a-token")
    page.keyboard.press("Enter")
    expect(page.locator("#token-error")).to_have_text("That token was not accepted.")

    page.get_by_label("API token").fill(READ)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#token-panel")).to_be_hidden()
    expect(page.locator("article.queue")).to_have_count(3)
    expect(page.locator("#conn")).to_have_text("live")
    pause = card(page, "work").locator("button.pause")
    expect(pause).to_be_disabled()
    expect(pause).to_have_attribute("title", "needs a token with the admin scope")
    expect(page.locator("#redrive-all")).to_be_disabled()
    assert page.evaluate("sessionStorage.getItem('spool.token')") == READ

    page.reload()  # the token is kept for the tab: no prompt again
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator("#token-panel")).to_be_hidden()

    page.get_by_role("button", name="Forget token").click()
    expect(page.locator("#token-panel")).to_be_visible()
    page.get_by_label("API token").fill(ADMIN)
    page.keyboard.press("Enter")
    admin_pause = card(page, "work").get_by_role("button", name="Pause")
    expect(admin_pause).to_be_enabled()
    admin_pause.click()
    expect(card(page, "work").get_by_role("button", name="Resume")).to_be_visible()
    with Client(secured.url, token=ADMIN) as spool:
        assert spool.queue("work").paused
        spool.resume("work")


def test_screenshot_for_the_readme(page: Page, server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(server.url)
    expect(page.locator("#conn")).to_have_text("live")
    with Client(server.url) as spool:
        for i in range(8):  # a few seconds of traffic, so the charts have a shape
            spool.publish_batch("work", list(range(5 + 3 * i)))
            if i % 3 == 0:
                spool.publish("poison", {"marker": str(tmp_path / "never")})
            page.wait_for_timeout(400)
    expect(card(page, "work").locator('dd[data-k="totals"]')).not_to_have_text("0 / 0 / 0")
    card(page, "poison").locator("button.show-dead").click()
    expect(page.locator("#dead-table tbody tr").first).to_contain_text("ValueError")
    page.wait_for_timeout(1000)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SPOOL_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_a_looked_up_message_shows_its_progress_live(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    steps = '[queues.steps]\nhandler = "tests.handlers:progress_gate"\nmode = "thread"\n'
    server = start_server(tmp_path, toml_config(tmp_path, steps))
    try:
        release = tmp_path / "release"
        with Client(server.url) as spool:
            message = spool.publish("steps", {"release": str(release)})
            page.goto(server.url)
            expect(page.locator("#conn")).to_have_text("live")
            page.fill("#lookup-id", message.id)
            page.keyboard.press("Enter")
            shown = page.locator('#lookup-result dd[data-k="progress"]')
            expect(shown).to_have_text('50 % {"step":"half"}', timeout=LIVE_MS)
            release.touch()
            # The stream's message event brings the end, and the last report, without a click.
            expect(shown).to_have_text('100 % {"step":"done"}', timeout=LIVE_MS)
            status = page.locator('#lookup-result dd[data-k="status"]')
            expect(status).to_have_text("succeeded", timeout=LIVE_MS)
    finally:
        server.kill()
