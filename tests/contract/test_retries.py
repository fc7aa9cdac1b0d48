"""Retries, dead letters and redrive."""

from __future__ import annotations

from pathlib import Path

from .conftest import Connect
from .helpers import figures, get, publish, publish_batch, wait_final, wait_status

FAST = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05}


async def test_flaky_handler_succeeds_on_third_attempt(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:flaky", **FAST}}) as (client, _):
        msg = await publish(client, "q", {"succeed_on": 3})
        done = await wait_final(client, msg["id"])
        assert done["status"] == "succeeded"
        assert done["attempts"] == 3
        assert done["result"] == {"attempt": 3}
        assert done["error"] is None
        counts = (await figures(client, "q"))["counts"]
        assert (counts["retried"], counts["succeeded"], counts["failed"]) == (2, 1, 0)


async def test_exhausted_retries_make_a_dead_letter(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:fail", "max_retries": 2, **FAST}}
    async with connect(queues) as (client, _):
        msg = await publish(client, "q", "bad")
        done = await wait_final(client, msg["id"])
        assert done["status"] == "failed"
        assert done["attempts"] == 3  # max_retries + 1
        assert done["error"]["type"] == "ValueError"
        assert "cannot handle" in done["error"]["message"]
        assert "Traceback" not in done["error"]["message"]
        fig = await figures(client, "q")
        assert fig["depth"]["dead"] == 1
        assert (fig["counts"]["retried"], fig["counts"]["failed"]) == (2, 1)
        dead = await (await client.get("/v1/queues/q/dead")).get_json()
        assert [m["id"] for m in dead["messages"]] == [msg["id"]]
        assert dead["next_cursor"] is None


async def test_retrying_message_waits_its_backoff(connect: Connect) -> None:
    # Full jitter draws the delay from [0, 3600 s): long enough that the retry never comes
    # while the test looks (with 30 s, 1 run in 300 saw it come within 0.1 s).
    queues = {
        "q": {
            "handler": "tests.handlers:fail",
            "retry_backoff_s": 3600,
            "retry_backoff_max_s": 3600,
        }
    }
    async with connect(queues) as (client, _):
        msg = await publish(client, "q", 1)
        doc = await wait_status(client, msg["id"], "retrying")
        assert doc["attempts"] == 1
        assert doc["scheduled_for"] is not None
        assert doc["error"]["type"] == "ValueError"
        assert (await figures(client, "q"))["depth"]["retrying"] == 1


async def test_dead_letters_page_newest_first(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:fail", "max_retries": 0, "concurrency": 1}}
    async with connect(queues) as (client, _):
        ids = []
        for i in range(5):
            msg = await publish(client, "q", i)
            await wait_final(client, msg["id"])
            ids.append(msg["id"])
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            url = "/v1/queues/q/dead?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = await (await client.get(url)).get_json()
            seen += [m["id"] for m in page["messages"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        assert (await client.get("/v1/queues/q/dead?limit=0")).status_code == 400


async def test_redrive_heals_a_poison_message(connect: Connect, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    queues = {"q": {"handler": "tests.handlers:poison", "max_retries": 1, **FAST}}
    async with connect(queues) as (client, _):
        msg = await publish(client, "q", {"marker": str(marker)})
        assert (await wait_final(client, msg["id"]))["status"] == "failed"
        marker.touch()  # the cause is fixed
        r = await client.post("/v1/queues/q/dead/redrive", json={"ids": [msg["id"], "nope"]})
        assert await r.get_json() == {"redriven": 1, "skipped": ["nope"]}
        done = await wait_final(client, msg["id"])
        assert done["status"] == "succeeded"
        assert done["attempts"] == 1  # attempts start again from 0
        assert done["result"] == "healed"
        assert (await figures(client, "q"))["depth"]["dead"] == 0


async def test_redrive_all_with_empty_body(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:fail", "max_retries": 0}}
    async with connect(queues) as (client, _):
        ids = [(await publish(client, "q", i))["id"] for i in range(3)]
        for mid in ids:
            await wait_final(client, mid)
        r = await client.post("/v1/queues/q/dead/redrive")
        assert (await r.get_json())["redriven"] == 3
        for mid in ids:
            assert (await wait_final(client, mid))["status"] == "failed"


async def test_redrive_is_all_or_nothing_against_max_size(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:fail", "max_retries": 0, "max_size": 2}}
    async with connect(queues) as (client, _):
        ids = [(await publish(client, "q", i))["id"] for i in range(2)]
        for mid in ids:
            await wait_final(client, mid)
        assert (await client.post("/v1/queues/q/pause")).status_code == 200
        await publish(client, "q", "fills one slot")
        r = await client.post("/v1/queues/q/dead/redrive", json={})
        assert r.status_code == 429
        assert "Retry-After" in r.headers
        assert (await figures(client, "q"))["depth"]["dead"] == 2


async def test_unserialisable_result_fails_the_attempt(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:not_serializable", "max_retries": 0}}
    async with connect(queues) as (client, _):
        msg = await publish(client, "q", 1)
        done = await wait_final(client, msg["id"])
        assert done["status"] == "failed"
        assert done["error"]["type"] == "ResultNotSerializable"


async def test_batch_with_a_failing_member_is_not_special(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:echo"}}) as (client, _):
        r = await publish_batch(client, "q", [{"body": i} for i in range(3)])
        assert r.status_code == 202
        for m in (await r.get_json())["messages"]:
            assert (await get(client, m["id"]))["queue"] == "q"
