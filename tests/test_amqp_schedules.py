"""A schedule on two `python -m service` nodes sharing one private RabbitMQ, no leader: each
tick is published once (the lock and shared record of broker/amqp/schedules.py), and a
pause on one node holds on the other."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
import pytest

from service.broker.amqp.schedules import lock_queue, record_queue

from .conftest import Server
from .rabbit import Rabbit, delete_spool_queues
from .waits import wait_until

pytestmark = pytest.mark.timeout(240)

SCHEDULE = "every-second"


def config(rabbit: Rabbit) -> str:
    return f"""
[server]
graceful_timeout_s = 2

[broker]
backend = "amqp"
amqp_url = "{rabbit.url}"

[queues.ticks]
handler = "tests.handlers:echo"

[schedules.{SCHEDULE}]
cron = "* * * * * *"
queue = "ticks"
"""


async def delete_schedule_queues(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for name in (record_queue(SCHEDULE), lock_queue(SCHEDULE)):
            await channel.queue_delete(name)


@pytest.fixture
def clean(rabbit: Rabbit) -> Iterator[None]:
    asyncio.run(delete_schedule_queues(rabbit.url))
    yield
    asyncio.run(delete_spool_queues(rabbit.url, ["ticks"]))
    asyncio.run(delete_schedule_queues(rabbit.url))


def last_run(client: httpx.Client) -> datetime | None:
    [found] = client.get("/v1/schedules").json()["schedules"]
    value = found["last_run"]
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_two_nodes_publish_each_tick_once(
    rabbit: Rabbit, clean: None, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    a = server_factory(config(rabbit))
    b = server_factory(config(rabbit))
    a.start()
    b.start()
    with (
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        wait_until(lambda: last_run(ca) is not None, "a first tick")
        first = last_run(ca)
        assert first is not None
        # Both nodes tick for several seconds side by side.
        wait_until(lambda: (last_run(cb) or first) >= first + timedelta(seconds=5), "5 ticks")
        r = ca.post(f"/v1/schedules/{SCHEDULE}/pause")
        assert r.status_code == 200 and r.json()["paused"] is True
        stopped = last_run(ca)
        assert stopped is not None
        # The pause holds on the other node: it says so, and runs nothing more.
        wait_until(lambda: cb.get("/v1/schedules").json()["schedules"][0]["paused"], "paused on B")
        # What the stream has told each node: every published message, once.
        wait_until(
            lambda: (
                ca.get("/v1/queues/ticks").json()["counts"]["published"]
                == cb.get("/v1/queues/ticks").json()["counts"]["published"]
            ),
            "both nodes' counts",
        )
        published = ca.get("/v1/queues/ticks").json()["counts"]["published"]
        # Every tick since the test began, asked by key: a tick that was published answers
        # 200 with its message. As many ticks were published as messages: none twice.
        ticks = []
        at = began
        while at <= stopped:
            key = f"schedule:{SCHEDULE}:{at.isoformat().replace('+00:00', 'Z')}"
            r = cb.post("/v1/queues/ticks/messages", json={"body": 0, "idempotency_key": key})
            assert r.status_code in (200, 202), r.text
            if r.status_code == 200:
                ticks.append(at)
            at += timedelta(seconds=1)
        assert first in ticks and stopped in ticks
        assert published == len(ticks), f"{published} messages for {len(ticks)} ticks"
        assert last_run(cb) == stopped
