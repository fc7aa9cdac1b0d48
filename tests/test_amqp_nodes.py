"""Several `python -m service` processes on one private RabbitMQ: the scale-out guarantees.

Nothing acknowledged is lost when a node is killed with -9, nor when RabbitMQ itself
restarts; every node answers for every message; a second node runs work beside the first.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server
from .rabbit import Rabbit, delete_spool_queues
from .waits import wait_until

pytestmark = pytest.mark.timeout(240)


def config(rabbit: Rabbit, tmp_path: Path, *, sleep_s: float = 0.02, concurrency: int = 4) -> str:
    return f"""
[server]
graceful_timeout_s = 3

[broker]
backend = "amqp"
amqp_url = "{rabbit.url}"

[queues.load]
handler = "tests.handlers:record_async"
mode = "async"
concurrency = {concurrency}
max_size = 100000
max_retries = 5
retry_backoff_s = 0.05
retry_backoff_max_s = 0.2
options = {{ path = "{tmp_path / "done.txt"}", sleep_s = {sleep_s} }}
"""


@pytest.fixture
def clean(rabbit: Rabbit) -> Iterator[None]:
    yield
    asyncio.run(delete_spool_queues(rabbit.url, ["load"]))


def publish_batch(client: httpx.Client, count: int, tag: str) -> list[str]:
    batch = [{"body": {"tag": tag, "n": n}} for n in range(count)]
    r = client.post("/v1/queues/load/messages/batch", json={"messages": batch})
    assert r.status_code == 202, r.text
    return [m["id"] for m in r.json()["messages"]]


def wait_all_final(
    client: httpx.Client, ids: list[str], timeout: float = 90
) -> dict[str, dict[str, Any]]:
    """Every message's final document; fails naming how many never got there."""
    deadline = time.monotonic() + timeout
    docs: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        still = []
        for mid in pending:
            r = client.get(f"/v1/messages/{mid}")
            doc = r.json() if r.status_code == 200 else {"status": str(r.status_code)}
            if doc["status"] in ("succeeded", "failed", "cancelled"):
                docs[mid] = doc
            else:
                still.append(mid)
        pending = still
        if pending:
            client.get(f"/v1/messages/{pending[0]}", params={"wait": 2})
    if pending:
        seen = Counter(
            (d.get("status"), d.get("attempts"))
            for d in (client.get(f"/v1/messages/{m}").json() for m in pending)
        )
        queue = client.get("/v1/queues/load").text
        raise AssertionError(f"{len(pending)} of {len(ids)} never final: {seen}; {queue}")
    return docs


def processed(tmp_path: Path) -> set[str]:
    path = tmp_path / "done.txt"
    return set(path.read_text().split()) if path.exists() else set()


def test_publish_on_one_node_read_on_the_other(
    rabbit: Rabbit, clean: None, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    a = server_factory(config(rabbit, tmp_path))
    b = server_factory(config(rabbit, tmp_path))
    a.start()
    b.start()
    with (
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        r = ca.post("/v1/queues/load/messages", json={"body": {"x": 1}})
        assert r.status_code == 202
        mid = r.json()["id"]
        doc = cb.get(f"/v1/messages/{mid}", params={"wait": 20}).json()
        assert doc["status"] == "succeeded" and doc["result"] == mid
        ids = publish_batch(cb, 200, "both")
        assert {d["status"] for d in wait_all_final(ca, ids).values()} == {"succeeded"}
        figures = cb.get("/v1/queues/load").json()
        assert figures["depth"]["queued"] == 0 and figures["counts"]["succeeded"] >= 201
        assert cb.get("/readyz").json()["checks"]["backend"]["ok"] is True


def test_kill_9_of_a_node_under_load_loses_nothing(
    rabbit: Rabbit, clean: None, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    a = server_factory(config(rabbit, tmp_path, sleep_s=0.05))
    b = server_factory(config(rabbit, tmp_path, sleep_s=0.05))
    a.start()
    b.start()
    ids: list[str] = []
    with (
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        for _ in range(5):
            ids += publish_batch(ca, 60, "before")
        # A is busy with its share (4 running, 4 prefetched) when it dies.
        wait_until(lambda: ca.get("/v1/queues/load").json()["depth"]["running"] >= 4, "A busy")
        a.kill()
        for _ in range(3):
            ids += publish_batch(cb, 60, "during")
        a.start()
        ids += publish_batch(ca, 60, "after")
        docs = wait_all_final(cb, ids)
        lost = [mid for mid in ids if mid not in processed(tmp_path)]
        assert lost == [], f"lost {len(lost)} of {len(ids)}"
        assert {d["status"] for d in docs.values()} == {"succeeded"}
        # A's unacked deliveries ran again elsewhere, their lost attempt counted
        assert any(d["attempts"] > 1 for d in docs.values())
        assert cb.get("/v1/queues/load").json()["depth"]["queued"] == 0


def test_a_message_that_kills_its_node_is_dead_lettered_not_looped(
    rabbit: Rabbit, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    crash = f"""
[broker]
backend = "amqp"
amqp_url = "{rabbit.url}"

[queues.crash]
handler = "tests.handlers:crash"
mode = "thread"
max_retries = 0
"""
    nodes = [server_factory(crash), server_factory(crash)]
    try:
        for node in nodes:
            node.start()
        with httpx.Client(base_url=nodes[0].url, timeout=30) as client:
            # Paused while publishing, so no node dies before the 202 is sent.
            assert client.post("/v1/queues/crash/pause").status_code == 200
            r = client.post("/v1/queues/crash/messages", json={"body": "boom"})
            assert r.status_code == 202
            mid = r.json()["id"]
            try:
                client.post("/v1/queues/crash/resume")
            except httpx.HTTPError:
                pass  # this node may die before it answers
        procs = [n.process for n in nodes if n.process is not None]
        wait_until(lambda: any(proc.poll() is not None for proc in procs), "a node ran it")
        (survivor,) = [n for n in nodes if n.process is not None and n.process.poll() is None]
        with httpx.Client(base_url=survivor.url, timeout=30) as client:
            doc = client.get(f"/v1/messages/{mid}", params={"wait": 20}).json()
            assert doc["status"] == "failed" and doc["error"]["type"] == "ProcessDied"
            assert doc["attempts"] == 1  # it was not run again
            page = client.get("/v1/queues/crash/dead").json()
            assert [m["id"] for m in page["messages"]] == [mid]
    finally:
        for node in nodes:
            node.kill()
        import asyncio

        asyncio.run(delete_spool_queues(rabbit.url, ["crash"]))


def test_sigterm_of_a_busy_node_gives_its_work_back(
    rabbit: Rabbit, clean: None, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    a = server_factory(config(rabbit, tmp_path, sleep_s=0.3))
    b = server_factory(config(rabbit, tmp_path, sleep_s=0.3))
    a.start()
    b.start()
    with (
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        ids = publish_batch(ca, 120, "stop")
        wait_until(lambda: ca.get("/v1/queues/load").json()["depth"]["running"] >= 8, "all busy")
        started = time.monotonic()
        a.signal(signal.SIGTERM)
        assert a.wait_exit(30) == 0
        assert time.monotonic() - started < 3 + 5  # graceful_timeout_s + 5 s
        docs = wait_all_final(cb, ids)
        assert {d["status"] for d in docs.values()} == {"succeeded"}
        assert set(ids) <= processed(tmp_path)
        # a stop is not a failure: nothing was counted as a lost attempt
        assert all(d["error"] is None for d in docs.values())


def test_rabbitmq_restart_under_load_keeps_every_202(
    rabbit: Rabbit, clean: None, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    a = server_factory(config(rabbit, tmp_path))
    b = server_factory(config(rabbit, tmp_path))
    a.start()
    b.start()
    accepted: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not stop.is_set():
                node = (a, b)[n % 2]
                n += 1
                try:
                    r = client.post(f"{node.url}/v1/queues/load/messages", json={"body": n})
                except httpx.HTTPError:
                    refused.append(-1)
                    continue
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
                else:
                    assert r.status_code == 503, r.text
                    refused.append(r.status_code)
                    time.sleep(0.05)

    publisher = threading.Thread(target=load)
    publisher.start()
    try:
        wait_until(lambda: len(accepted) >= 50, "the load got going", timeout=60)
        rabbit.restart()
        ready: set[str] = set()
        deadline = time.monotonic() + 60
        while len(ready) < 2 and time.monotonic() < deadline:
            for node in (a, b):
                if httpx.get(f"{node.url}/readyz", timeout=5).status_code == 200:
                    ready.add(node.url)
            time.sleep(0.2)
        assert len(ready) == 2, "nodes did not reconnect"
        after = len(accepted)
        wait_until(lambda: len(accepted) >= after + 50, "publishing resumed", timeout=60)
    finally:
        stop.set()
        publisher.join(30)
    assert refused, "the outage was never seen by a publisher"
    with httpx.Client(base_url=b.url, timeout=30) as cb:
        docs = wait_all_final(cb, accepted)
    lost = [mid for mid in accepted if mid not in processed(tmp_path)]
    assert lost == [], f"lost {len(lost)} of {len(accepted)}"
    assert {d["status"] for d in docs.values()} == {"succeeded"}


def gated_config(rabbit: Rabbit, concurrency: int) -> str:
    return f"""
[server]
graceful_timeout_s = 3

[broker]
backend = "amqp"
amqp_url = "{rabbit.url}"

[queues.gated]
handler = "tests.handlers:gate_async"
mode = "async"
concurrency = {concurrency}
"""


def started_count(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


@pytest.mark.slow
def test_a_second_node_runs_work_beside_the_first(
    rabbit: Rabbit, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """Scale-out, without timing: handlers held open by a gate fill node a's `concurrency`
    slots; the backlog waits until node b starts, which then runs as many again at the same
    time. (How much faster two nodes are is for the benchmarks, not an assertion here: on a
    loaded machine a throughput ratio is noise.)"""
    concurrency = 4
    started, release = tmp_path / "started.txt", tmp_path / "release"
    body = {"started": str(started), "release": str(release)}
    a = server_factory(gated_config(rabbit, concurrency))
    a.start()
    try:
        with httpx.Client(base_url=a.url, timeout=30) as ca:
            batch = [{"body": body} for _ in range(3 * concurrency)]
            r = ca.post("/v1/queues/gated/messages/batch", json={"messages": batch})
            assert r.status_code == 202, r.text
            ids = [m["id"] for m in r.json()["messages"]]
            wait_until(lambda: started_count(started) == concurrency, "node a's slots filled")
            # Node a holds all it may (prefetch = concurrency): the rest waits for another node.
            b = server_factory(gated_config(rabbit, concurrency))
            b.start()
            wait_until(
                lambda: started_count(started) == 2 * concurrency, "node b ran beside node a"
            )
            release.touch()
            with httpx.Client(base_url=b.url, timeout=30) as cb:
                docs = wait_all_final(cb, ids)
            assert {d["status"] for d in docs.values()} == {"succeeded"}
            assert started_count(started) == len(ids)  # each ran once
    finally:
        release.touch()
        asyncio.run(delete_spool_queues(rabbit.url, ["gated"]))
