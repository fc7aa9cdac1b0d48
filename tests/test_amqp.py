"""The amqp backend in process, on a private RabbitMQ: two Runtimes in one test are two nodes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from service import Runtime, Settings, grace
from service.broker.amqp import AmqpBroker
from service.errors import StartupError

from .conftest import client_for, free_port, make_settings
from .rabbit import Rabbit, delete_spool_queues

QUEUES: dict[str, dict[str, Any]] = {
    "work": {"handler": "tests.handlers:echo", "concurrency": 2},
    "flaky": {
        "handler": "tests.handlers:flaky",
        "max_retries": 3,
        "retry_backoff_s": 0.2,
        "retry_backoff_max_s": 0.4,
    },
    "fails": {"handler": "tests.handlers:poison", "max_retries": 0, "concurrency": 1},
    "small": {"handler": "tests.handlers:echo", "max_size": 3, "concurrency": 1},
}

Nodes = Callable[[int], Awaitable[list[tuple[Client, Runtime]]]]


@pytest.fixture
async def amqp_settings(rabbit: Rabbit) -> AsyncIterator[Callable[..., Settings]]:
    used: set[str] = set()

    def build(queues: dict[str, dict[str, Any]] | None = None, **sections: Any) -> Settings:
        queues = queues or QUEUES
        used.update(queues)
        broker = {"backend": "amqp", "amqp_url": rabbit.url, **sections.pop("broker", {})}
        return make_settings(queues, broker=broker, **sections)

    yield build
    await delete_spool_queues(rabbit.url, sorted(used))


@pytest.fixture
async def nodes(amqp_settings: Callable[..., Settings]) -> AsyncIterator[Nodes]:
    async with AsyncExitStack() as stack:

        async def start(count: int) -> list[tuple[Client, Runtime]]:
            settings = amqp_settings()
            return [await stack.enter_async_context(client_for(settings)) for _ in range(count)]

        yield start


async def final(client: Client, message_id: str, timeout: float = 20) -> dict[str, Any]:
    r = await client.get(f"/v1/messages/{message_id}?wait={timeout}")
    assert r.status_code == 200, await r.get_data()
    doc: dict[str, Any] = await r.get_json()
    assert doc["status"] in ("succeeded", "failed", "cancelled"), doc
    return doc


async def eventually(check: Callable[[], Any], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_message_published_on_one_node_is_answered_by_the_other(nodes: Nodes) -> None:
    (a, _), (b, _) = await nodes(2)
    r = await a.post("/v1/queues/work/messages", json={"body": {"n": 1}})
    assert r.status_code == 202
    mid = (await r.get_json())["id"]
    doc = await final(b, mid)
    assert doc["status"] == "succeeded" and doc["result"] == {"n": 1} and doc["attempts"] == 1
    # and a node that starts later replays the history
    (c, _) = (await nodes(1))[0]
    r = await c.get(f"/v1/messages/{mid}")
    assert r.status_code == 200 and (await r.get_json())["status"] == "succeeded"


async def test_full_queue_answers_429_and_batch_is_all_or_nothing(nodes: Nodes) -> None:
    (a, _), (b, _) = await nodes(2)
    await a.post("/v1/queues/small/pause")
    await eventually(lambda: _paused(b, "small"))  # the other node hears of it in ms
    for i in range(3):
        r = await a.post("/v1/queues/small/messages", json={"body": i})
        assert r.status_code == 202
    r = await b.post("/v1/queues/small/messages", json={"body": 9})
    assert r.status_code == 429 and "Retry-After" in r.headers
    r = await a.get("/v1/queues/small")
    figures = await r.get_json()
    assert figures["depth"]["queued"] == 3 and figures["paused"] is True
    await a.post("/v1/queues/small/resume")
    await eventually(lambda: _depth(a, "small", "queued", 0))
    r = await b.post(
        "/v1/queues/small/messages/batch", json={"messages": [{"body": i} for i in range(4)]}
    )
    assert r.status_code == 429
    r = await b.post(
        "/v1/queues/small/messages/batch", json={"messages": [{"body": i} for i in range(3)]}
    )
    assert r.status_code == 202
    for doc in (await r.get_json())["messages"]:
        assert (await final(a, doc["id"]))["status"] == "succeeded"


async def _depth(client: Client, queue: str, status: str, value: int) -> bool:
    doc = await (await client.get(f"/v1/queues/{queue}")).get_json()
    return bool(doc["depth"][status] == value)


async def test_retries_with_backoff_then_success_on_any_node(nodes: Nodes) -> None:
    (a, _), (b, _) = await nodes(2)
    r = await a.post("/v1/queues/flaky/messages", json={"body": {"succeed_on": 3}})
    doc = await final(b, (await r.get_json())["id"])
    assert doc["status"] == "succeeded" and doc["attempts"] == 3 and doc["result"] == {"attempt": 3}


async def test_delay_holds_a_message_until_due(nodes: Nodes) -> None:
    (a, _), (b, _) = await nodes(2)
    r = await a.post("/v1/queues/work/messages", json={"body": "later", "delay_s": 3})
    msg = await r.get_json()
    assert msg["status"] == "scheduled" and msg["scheduled_for"] is not None
    # The other node learns of it from the event stream, and holds it too.
    await eventually(lambda: _message_is(b, msg["id"], "scheduled"))
    doc = await final(b, msg["id"])
    assert doc["status"] == "succeeded" and doc["started_at"] >= msg["scheduled_for"]


async def test_dead_letters_and_redrive_across_nodes(nodes: Nodes, tmp_path: Path) -> None:
    (a, _), (b, _) = await nodes(2)
    marker = tmp_path / "healed"
    r = await a.post("/v1/queues/fails/messages", json={"body": {"marker": str(marker)}})
    mid = (await r.get_json())["id"]
    doc = await final(b, mid)
    assert doc["status"] == "failed" and doc["error"]["type"] == "ValueError"
    page = await (await b.get("/v1/queues/fails/dead")).get_json()
    assert [m["id"] for m in page["messages"]] == [mid]
    await eventually(lambda: _depth(a, "fails", "dead", 1))
    marker.write_text("ok")
    r = await b.post("/v1/queues/fails/dead/redrive", json={"ids": [mid, "nope"]})
    assert await r.get_json() == {"redriven": 1, "skipped": ["nope"]}
    doc = await final(a, mid)
    assert doc["status"] == "succeeded" and doc["attempts"] == 1 and doc["result"] == "healed"
    await eventually(lambda: _depth(a, "fails", "dead", 0))


async def test_pause_reaches_every_node_and_cancel_works_on_another(nodes: Nodes) -> None:
    (a, _), (b, _) = await nodes(2)
    r = await a.post("/v1/queues/work/pause")
    assert (await r.get_json())["paused"] is True
    await eventually(lambda: _paused(b, "work"))
    ids = []
    for i in range(3):
        r = await b.post("/v1/queues/work/messages", json={"body": i})
        ids.append((await r.get_json())["id"])
    # The other node learns of them from the event stream, and runs none.
    await eventually(lambda: _all_are(a, ids, "queued"))
    r = await a.delete(f"/v1/messages/{ids[0]}")
    assert r.status_code == 200 and (await r.get_json())["status"] == "cancelled"
    await b.post("/v1/queues/work/resume")
    assert (await final(a, ids[0]))["status"] == "cancelled"
    for mid in ids[1:]:
        assert (await final(a, mid))["status"] == "succeeded"
    r = await b.delete(f"/v1/messages/{ids[1]}")
    assert r.status_code == 409


async def _message_is(client: Client, message_id: str, status: str) -> bool:
    r = await client.get(f"/v1/messages/{message_id}")
    return r.status_code == 200 and (await r.get_json())["status"] == status


async def _all_are(client: Client, ids: list[str], status: str) -> bool:
    return all([await _message_is(client, mid, status) for mid in ids])


async def _paused(client: Client, queue: str) -> bool:
    doc = await (await client.get(f"/v1/queues/{queue}")).get_json()
    return bool(doc["paused"])


async def test_idempotency_key_repeats_answer_200_on_another_node(nodes: Nodes) -> None:
    (a, _), (b, _) = await nodes(2)
    r1 = await a.post("/v1/queues/work/messages", json={"body": 1, "idempotency_key": "k"})
    assert r1.status_code == 202
    mid = (await r1.get_json())["id"]
    await eventually(lambda: _known(b, mid))
    r2 = await b.post("/v1/queues/work/messages", json={"body": 2, "idempotency_key": "k"})
    assert r2.status_code == 200 and (await r2.get_json())["id"] == mid


async def _known(client: Client, mid: str) -> bool:
    return bool((await client.get(f"/v1/messages/{mid}")).status_code == 200)


async def test_broker_restart_answers_503_then_reconnects_by_itself(
    nodes: Nodes, rabbit: Rabbit
) -> None:
    (a, rt), (b, _) = await nodes(2)
    first = (await (await a.post("/v1/queues/work/messages", json={"body": 1})).get_json())["id"]
    assert (await final(b, first))["status"] == "succeeded"
    await asyncio.to_thread(rabbit.stop)
    try:
        await eventually(lambda: _status_is(a, "/readyz", 503))
        r = await a.post("/v1/queues/work/messages", json={"body": 2})
        assert r.status_code == 503 and "Retry-After" in r.headers
    finally:
        await asyncio.to_thread(rabbit.start)
    await eventually(lambda: _status_is(a, "/readyz", 200), timeout=60)
    await eventually(lambda: _status_is(b, "/readyz", 200), timeout=60)
    r = await a.post("/v1/queues/work/messages", json={"body": 3})
    assert r.status_code == 202
    doc = await final(b, (await r.get_json())["id"])
    assert doc["status"] == "succeeded" and doc["result"] == 3
    assert rt.live_consumers("work") == 2


async def _status_is(client: Client, path: str, status: int) -> bool:
    return bool((await client.get(path)).status_code == status)


async def test_unreachable_rabbitmq_stops_the_start_with_one_clear_line() -> None:
    settings = make_settings({"work": {"handler": "tests.handlers:echo"}})
    port = free_port()  # nothing listens there
    broker = AmqpBroker(
        settings.queues, settings.results, f"amqp://guest:s3cret@127.0.0.1:{port}/", start_timeout=2
    )
    with pytest.raises(StartupError) as caught:
        await broker.start()
    text = str(caught.value)
    assert text.startswith("broker.amqp_url:") and str(port) in text and "s3cret" not in text
    assert broker.health()["ok"] is False


async def test_a_channel_that_dies_is_reopened_with_its_connection(nodes: Nodes) -> None:
    ((a, rt),) = await nodes(1)
    broker = rt.broker
    assert isinstance(broker, AmqpBroker) and broker.link is not None
    old = broker.link
    assert old.publisher is not None
    await old.publisher.close()  # as RabbitMQ does after a channel error
    await eventually(lambda: _replaced(broker, old))
    r = await a.post("/v1/queues/work/messages", json={"body": "after"})
    assert r.status_code == 202
    assert (await final(a, (await r.get_json())["id"]))["status"] == "succeeded"


async def _replaced(broker: AmqpBroker, old: object) -> bool:
    return broker.link is not None and broker.link is not old and broker.link.usable


async def test_nodes_with_other_queue_arguments_refuse_to_start(
    amqp_settings: Callable[..., Settings], rabbit: Rabbit
) -> None:
    queues = {"work": {"handler": "tests.handlers:echo", "max_size": 10}}
    async with client_for(amqp_settings(queues)):
        other = amqp_settings({"work": {"handler": "tests.handlers:echo", "max_size": 20}})
        broker = AmqpBroker(other.queues, other.results, rabbit.url, start_timeout=10)
        with pytest.raises(StartupError) as caught:
            await broker.start()
        assert str(caught.value).startswith("broker.amqp_url:")
        assert "other arguments" in str(caught.value)


async def test_a_rabbitmq_that_stops_answering_does_not_hold_the_close(
    amqp_settings: Callable[..., Settings], rabbit: Rabbit
) -> None:
    """SPEC bounds every stop, whatever RabbitMQ does: its last step, the connection's close,
    waits for RabbitMQ's answer only within grace.AMQP_CLOSE_S; unacked deliveries go back
    to the queue when the connection drops anyway."""
    settings = amqp_settings({"work": {"handler": "tests.handlers:echo"}})
    broker = AmqpBroker(settings.queues, settings.results, rabbit.url, start_timeout=10)
    await broker.start()
    assert rabbit.process is not None
    os.killpg(rabbit.process.pid, signal.SIGSTOP)  # alive, connected, and silent
    try:
        closing = asyncio.ensure_future(broker.close())
        # The bound, with a second for a loaded machine (aio-pika's own wait is 2 s).
        await asyncio.wait({closing}, timeout=grace.AMQP_CLOSE_S + 1.0)
        assert closing.done(), "the close waited on a RabbitMQ that does not answer"
        closing.result()
    finally:
        os.killpg(rabbit.process.pid, signal.SIGCONT)
