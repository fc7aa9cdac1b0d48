"""Publish and wait (`Prefer: wait=N`, RFC 7240) on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Connect
from .helpers import pause, publish, wait_final

ECHO = {"handler": "tests.handlers:echo"}
GATE = {"handler": "tests.handlers:gate", "mode": "thread"}


async def test_a_message_that_ends_in_time_answers_200_with_the_final_message(
    connect: Connect,
) -> None:
    async with connect({"q": ECHO}) as (client, _):
        r = await client.post(
            "/v1/queues/q/messages", json={"body": {"n": 1}}, headers={"Prefer": "wait=20"}
        )
        assert r.status_code == 200, await r.get_data()
        assert r.headers["Preference-Applied"] == "wait=20"
        doc = await r.get_json()
        assert (doc["status"], doc["result"], doc["attempts"]) == ("succeeded", {"n": 1}, 1)


async def test_a_message_still_running_at_the_end_of_the_wait_answers_the_usual_202(
    connect: Connect, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    async with connect({"q": GATE}) as (client, _):
        r = await client.post(
            "/v1/queues/q/messages",
            json={"body": {"release": str(release)}},
            headers={"Prefer": "respond-async, wait=0.2"},
        )
        assert r.status_code == 202
        assert r.headers["Preference-Applied"] == "wait=0.2"
        doc = await r.get_json()
        assert r.headers["Location"] == f"/v1/messages/{doc['id']}"
        assert (doc["status"], doc["attempts"]) == ("queued", 0)  # as accepted, as always
        release.touch()
        assert (await wait_final(client, doc["id"]))["status"] == "succeeded"


async def test_a_failed_message_answers_200_with_its_error(connect: Connect) -> None:
    queue = {"handler": "tests.handlers:fail", "max_retries": 0}
    async with connect({"q": queue}) as (client, _):
        r = await client.post(
            "/v1/queues/q/messages", json={"body": 1}, headers={"Prefer": "wait=20"}
        )
        assert r.status_code == 200
        doc = await r.get_json()
        assert (doc["status"], doc["error"]["type"]) == ("failed", "ValueError")


async def test_a_repeated_key_waits_for_the_earlier_message(connect: Connect) -> None:
    async with connect({"q": ECHO}) as (client, _):
        await pause(client, "q")
        first = await publish(client, "q", 1, idempotency_key="k")
        r = await client.post(
            "/v1/queues/q/messages",
            json={"body": 2, "idempotency_key": "k"},
            headers={"Prefer": "wait=0.1"},
        )
        assert r.status_code == 200  # a repeat, as without the preference
        assert (await r.get_json())["id"] == first["id"]


async def test_a_publish_without_a_wait_preference_is_unchanged(connect: Connect) -> None:
    async with connect({"q": ECHO}) as (client, _):
        r = await client.post(
            "/v1/queues/q/messages", json={"body": 1}, headers={"Prefer": "respond-async"}
        )
        assert r.status_code == 202
        assert "Preference-Applied" not in r.headers


@pytest.mark.parametrize("value", ["0", "31", "-1", "abc", "", "1e9", "nan"])
async def test_a_bad_wait_is_a_400_problem_naming_the_header(connect: Connect, value: str) -> None:
    async with connect({"q": ECHO}) as (client, _):
        r = await client.post(
            "/v1/queues/q/messages", json={"body": 1}, headers={"Prefer": f"wait={value}"}
        )
        assert r.status_code == 400
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert "Prefer" in (await r.get_json())["detail"]
        published = (await (await client.get("/v1/queues/q")).get_json())["counts"]["published"]
        assert published == 0  # refused before anything was published
