"""Progress (ctx.progress): shown on GET, waited for with ?wait_for=progress, on every
backend and from every mode (async, thread, process)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from .conftest import Connect
from .helpers import FINAL, get, publish, wait_final

MODES = {
    "async": {"handler": "tests.handlers:progress_gate_async"},
    "thread": {"handler": "tests.handlers:progress_gate", "mode": "thread"},
    "process": {"handler": "tests.handlers:progress_gate", "mode": "process"},
}


async def _first_progress(client: Any, message_id: str, timeout: float = 20) -> dict[str, Any]:
    """Long-polls with wait_for=progress until the message shows progress (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        left = deadline - loop.time()
        r = await client.get(f"/v1/messages/{message_id}?wait={left:.3f}&wait_for=progress")
        assert r.status_code == 200, await r.get_data()
        doc: dict[str, Any] = await r.get_json()
        if doc["progress"] is not None:
            return doc
    raise AssertionError(f"no progress on {message_id} within {timeout}s")


@pytest.mark.parametrize("mode", list(MODES))
async def test_progress_shows_on_get_and_wakes_a_progress_wait(
    connect: Connect, tmp_path: Path, mode: str
) -> None:
    release = tmp_path / "release"
    async with connect({"q": MODES[mode]}) as (client, _):
        msg = await publish(client, "q", {"release": str(release)})
        running = await _first_progress(client, msg["id"])
        assert running["status"] == "running"
        progress = running["progress"]
        assert (progress["fraction"], progress["detail"]) == (0.5, {"step": "half"})
        assert progress["at"].endswith("Z")
        assert (await get(client, msg["id"]))["progress"] == progress
        # A progress wait started now answers on the next report (or the end), not at once.
        waiting = asyncio.ensure_future(
            client.get(f"/v1/messages/{msg['id']}?wait=20&wait_for=progress")
        )
        await asyncio.sleep(0)
        release.touch()
        woken: dict[str, Any] = await (await waiting).get_json()
        assert woken["progress"]["fraction"] == 1.0 or woken["status"] in FINAL
        done = await wait_final(client, msg["id"])
        assert done["status"] == "succeeded"
        # The final message keeps its attempt's last report: it landed before the outcome.
        assert (done["progress"]["fraction"], done["progress"]["detail"]) == (
            1.0,
            {"step": "done"},
        )


async def test_a_progress_wait_on_a_final_message_answers_at_once(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        msg = await publish(client, "q", 1)
        await wait_final(client, msg["id"])
        r = await client.get(f"/v1/messages/{msg['id']}?wait=30&wait_for=progress")
        doc = await r.get_json()
        assert (doc["status"], doc["progress"]) == ("succeeded", None)


async def test_an_unknown_wait_for_is_a_400_naming_it(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        msg = await publish(client, "q", 1)
        r = await client.get(f"/v1/messages/{msg['id']}?wait=1&wait_for=soon")
        assert r.status_code == 400
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert "wait_for" in (await r.get_json())["detail"]


@pytest.mark.parametrize(
    ("report", "error"),
    [
        ({"fraction": 1.5}, "ValueError"),
        ({"fraction": True}, "TypeError"),
        ({"fraction": 0.5, "detail": "x" * 5000}, "ValueError"),
    ],
)
async def test_a_bad_progress_report_fails_the_attempt_saying_why(
    connect: Connect, report: dict[str, Any], error: str
) -> None:
    queue = {"handler": "tests.handlers:bad_progress", "max_retries": 0}
    async with connect({"q": queue}) as (client, _):
        msg = await publish(client, "q", report)
        done = await wait_final(client, msg["id"])
        assert (done["status"], done["error"]["type"]) == ("failed", error)
        assert "progress" in done["error"]["message"]
