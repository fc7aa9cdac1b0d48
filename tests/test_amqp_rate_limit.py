"""A rate limit shared by two `python -m service` nodes on one private RabbitMQ: together
they start no more than the configured rate (within 10 %), each taking its share from the
count of live nodes that the events stream shows (service/broker/amqp/presence.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import pytest

from .conftest import Server
from .rabbit import Rabbit, delete_spool_queues
from .test_amqp_nodes import wait_all_final
from .waits import wait_until

pytestmark = pytest.mark.timeout(240)

LIMIT_PER_S = 20
BURST = 4  # each of two nodes holds half
WINDOW_S = 20.0
MESSAGES = 520  # 26 s of work at the limit: the backlog outlasts the measured window


def config(rabbit: Rabbit) -> str:
    return f"""
[broker]
backend = "amqp"
amqp_url = "{rabbit.url}"

[queues.limited]
handler = "tests.handlers:async_echo"
mode = "async"
concurrency = 4
max_size = 100000
rate_limit = "{LIMIT_PER_S}/s"
rate_limit_burst = {BURST}
"""


@pytest.fixture
def clean(rabbit: Rabbit) -> Iterator[None]:
    yield
    asyncio.run(delete_spool_queues(rabbit.url, ["limited"]))


def nodes_seen(client: httpx.Client) -> int:
    backend = client.get("/readyz").json()["checks"]["backend"]
    return int(backend.get("nodes", 0))


def succeeded(client: httpx.Client) -> float:
    series = 'spool_messages_processed_total{outcome="succeeded",queue="limited"} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series):
            return float(line.removeprefix(series))
    raise AssertionError(f"no {series.strip()} in /metrics")


def started_at(doc: dict[str, object]) -> float:
    stamp = str(doc["started_at"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def test_two_nodes_share_the_rate_limit(
    rabbit: Rabbit, clean: None, server_factory: Callable[..., Server]
) -> None:
    a = server_factory(config(rabbit))
    b = server_factory(config(rabbit))
    a.start()
    b.start()
    with (
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        wait_until(lambda: nodes_seen(ca) == 2 and nodes_seen(cb) == 2, "both nodes see two")
        # The fast path (fastpath.py) answers these: the header comes from it too.
        one = ca.post("/v1/queues/limited/messages", json={"body": 0})
        assert one.status_code == 202, one.text
        assert one.headers["RateLimit-Policy"] == f'"limited";q={LIMIT_PER_S};w=1'
        ids: list[str] = [one.json()["id"]]
        for _ in range(MESSAGES // 130):
            batch = [{"body": n} for n in range(130)]
            r = ca.post("/v1/queues/limited/messages/batch", json={"messages": batch})
            assert r.status_code == 202, r.text
            assert r.headers["RateLimit-Policy"] == f'"limited";q={LIMIT_PER_S};w=1'
            ids += [m["id"] for m in r.json()["messages"]]
        docs = wait_all_final(cb, ids, timeout=120)
        ran = [succeeded(ca), succeeded(cb)]
    starts = sorted(started_at(doc) for doc in docs.values())
    first = starts[0]
    in_window = sum(1 for t in starts if t <= first + WINDOW_S)
    rate = in_window / WINDOW_S
    print(f"two nodes, limit {LIMIT_PER_S}/s: {in_window} started in {WINDOW_S:g} s = {rate}/s")
    # A correctness bound, not a speed one: a slow machine only starts fewer. Without the
    # sharing, each node would take the whole limit: twice as many.
    assert in_window <= 1.1 * LIMIT_PER_S * WINDOW_S + BURST
    # Both nodes ran their part: the figure is the two shares together, not one node's.
    assert all(ran), ran
