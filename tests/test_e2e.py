"""Over a real socket: `python -m service` as users start it, driven with httpx."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .conftest import Server, toml_config

QUEUES = """
[queues.work]
handler = "service.handlers:checksum"
mode = "process"
concurrency = 2

[queues.echo]
handler = "tests.handlers:echo"
concurrency = 8

[queues.flaky]
handler = "tests.handlers:flaky"
retry_backoff_s = 0.05
retry_backoff_max_s = 0.1

[queues.poison]
handler = "tests.handlers:poison"
max_retries = 1
retry_backoff_s = 0.01
retry_backoff_max_s = 0.01

[queues.ordered]
handler = "tests.handlers:sleep"
concurrency = 1
"""


def final(client: httpx.Client, message_id: str) -> dict[str, Any]:
    for _ in range(10):
        doc: dict[str, Any] = client.get(f"/v1/messages/{message_id}", params={"wait": 30}).json()
        if doc["status"] in ("succeeded", "failed", "cancelled"):
            return doc
    raise AssertionError(f"{message_id} never became final")


def test_thousand_messages_in_batches_all_come_back(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES))
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ids: list[str] = []
        for start in range(0, 1000, 250):
            batch = [{"body": {"n": n}} for n in range(start, start + 250)]
            r = client.post("/v1/queues/echo/messages/batch", json={"messages": batch})
            assert r.status_code == 202
            ids += [m["id"] for m in r.json()["messages"]]
        assert len(set(ids)) == 1000
        results = [final(client, mid) for mid in ids]
        assert [r["result"] for r in results] == [{"n": n} for n in range(1000)]
        assert all(r["status"] == "succeeded" for r in results)
        counts = client.get("/v1/queues/echo").json()["counts"]
        assert counts["published"] == counts["succeeded"] == 1000
        # The default built-in CPU handler in a process pool.
        msg = client.post("/v1/queues/work/messages", json={"body": {"data": "spool", "rounds": 3}})
        done = final(client, msg.json()["id"])
        assert done["result"]["rounds"] == 3
        assert len(done["result"]["sha256"]) == 64
    assert server.stop() == 0


def test_retry_dead_letter_redrive_and_priority_over_http(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES))
    server.start()
    marker = tmp_path / "healed"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        flaky = client.post("/v1/queues/flaky/messages", json={"body": {"succeed_on": 3}}).json()
        done = final(client, flaky["id"])
        assert (done["status"], done["attempts"]) == ("succeeded", 3)

        poison = client.post("/v1/queues/poison/messages", json={"body": {"marker": str(marker)}})
        dead = final(client, poison.json()["id"])
        assert (dead["status"], dead["attempts"]) == ("failed", 2)
        listed = client.get("/v1/queues/poison/dead").json()["messages"]
        assert [m["id"] for m in listed] == [dead["id"]]
        marker.touch()
        assert client.post("/v1/queues/poison/dead/redrive").json()["redriven"] == 1
        assert final(client, dead["id"])["status"] == "succeeded"

        assert client.post("/v1/queues/ordered/pause").json()["paused"] is True
        plan = [(1, "low"), (9, "urgent"), (5, "normal"), (9, "urgent2")]
        ids = [
            client.post(
                "/v1/queues/ordered/messages",
                json={"body": {"seconds": 0.02, "tag": tag}, "priority": p},
            ).json()["id"]
            for p, tag in plan
        ]
        assert client.post("/v1/queues/ordered/resume").json()["paused"] is False
        runs = sorted((final(client, mid) for mid in ids), key=lambda d: d["started_at"])
        assert [r["body"]["tag"] for r in runs] == ["urgent", "urgent2", "normal", "low"]
    assert server.stop() == 0
