"""service.client against a live `python -m service`: every method and every mapped error."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    ConnectionFailed,
    Envelope,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from service.client.errors import error_from

from .conftest import Server, free_port, toml_config
from .live import start_server
from .waits import gate_body, wait_until

ADMIN, READ, PUBLISH = "adm-token", "read-token", "pub-token"
QUEUES = """
[queues.work]
handler = "tests.handlers:echo"
concurrency = 2

[queues.bad]
handler = "tests.handlers:fail"
max_retries = 0

[queues.full]
handler = "tests.handlers:echo"
max_size = 1

[queues.later]
handler = "tests.handlers:echo"

[queues.slow]
handler = "tests.handlers:gate"
concurrency = 1
"""
AUTH = f"""
[server]
max_body_bytes = 4096

[auth]
tokens = ["admin:{ADMIN}", "read:{READ}", "publish:{PUBLISH}"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: every test uses its own queue or restores what it changes."""
    tmp = tmp_path_factory.mktemp("client")
    server = start_server(tmp, toml_config(tmp, QUEUES, AUTH))
    yield server
    server.kill()


@pytest.fixture
def spool(server: Server) -> Iterator[Client]:
    with Client(server.url, token=ADMIN, timeout=10) as client:
        yield client


def count_429(server: Server) -> int:
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {READ}"}).text
    pattern = r'spool_http_requests_total\{method="POST",route="/v1/queues/<queue>/messages",status="429"\} (\S+)'
    found = re.search(pattern, text)
    return int(float(found.group(1))) if found else 0


def test_publish_then_wait_returns_the_typed_result(spool: Client) -> None:
    message = spool.publish("work", {"n": 1}, headers={"h": "v"}, priority=4)
    assert message.queue == "work" and message.priority == 4 and message.headers == {"h": "v"}
    done = spool.wait(message.id, timeout=20)
    assert done.status == "succeeded" and done.final
    assert done.result == {"n": 1} and done.attempts == 1
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert spool.get(message.id) == done


def test_publish_with_wait_returns_the_final_message_in_one_request(spool: Client) -> None:
    done = spool.publish("work", {"n": 2}, wait=20)
    assert done.final and done.status == "succeeded" and done.result == {"n": 2}
    assert done.progress is None  # echo reports none


def test_publish_with_a_wait_that_runs_out_returns_the_message_as_accepted(
    spool: Client,
) -> None:
    message = spool.publish("later", "x", delay_s=60, wait=0.2)
    assert message.status == "scheduled" and not message.final
    spool.cancel(message.id)


def test_publish_with_a_bad_wait_raises_bad_request_naming_prefer(spool: Client) -> None:
    with pytest.raises(BadRequest, match="Prefer"):
        spool.publish("work", 1, wait=31)


def test_the_clients_wait_bound_is_the_servers() -> None:
    from service.api.messages import MAX_PUBLISH_WAIT_S as server_bound
    from service.client.plans import MAX_PUBLISH_WAIT_S as client_bound

    assert client_bound == server_bound


def test_wait_returns_the_current_state_when_time_is_up(spool: Client) -> None:
    message = spool.publish("later", "x", delay_s=60)
    started = time.monotonic()
    seen = spool.wait(message.id, timeout=0.5)
    assert seen.status == "scheduled" and not seen.final
    assert 0.4 < time.monotonic() - started < 10
    assert spool.cancel(message.id).status == "cancelled"
    with pytest.raises(Conflict) as caught:
        spool.cancel(message.id)
    assert caught.value.status == 409 and "cancel" in caught.value.detail


def test_a_given_idempotency_key_returns_the_earlier_message(spool: Client) -> None:
    first = spool.publish("later", 1, delay_s=60, idempotency_key="order-17")
    again = spool.publish("later", 2, delay_s=60, idempotency_key="order-17")
    assert again.id == first.id and again.body == 1
    spool.cancel(first.id)


def test_publish_batch_keeps_order_and_options(spool: Client) -> None:
    messages = spool.publish_batch(
        "later", [Envelope(body="a", delay_s=60, priority=9, headers={"k": "v"}), "b"]
    )
    assert [m.body for m in messages] == ["a", "b"]
    assert messages[0].status == "scheduled" and messages[0].priority == 9
    assert messages[0].headers == {"k": "v"}
    spool.cancel(messages[0].id)
    assert spool.wait(messages[1].id, timeout=20).status == "succeeded"


def test_queues_queue_pause_and_resume(spool: Client) -> None:
    names = [q.name for q in spool.queues()]
    assert names == ["work", "bad", "full", "later", "slow"]
    paused = spool.pause("later")
    assert paused.paused and paused.name == "later" and paused.max_size == 10000
    assert spool.queue("later").paused
    resumed = spool.resume("later")
    assert not resumed.paused and resumed.consumers == 4


def test_dead_letters_and_redrive(spool: Client) -> None:
    ids = [spool.publish("bad", {"i": i}).id for i in range(3)]
    for message_id in ids:
        failed = spool.wait(message_id, timeout=20)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.type == "ValueError"
    page = spool.dead("bad", limit=2)
    assert len(page.messages) == 2 and page.next_cursor
    rest = spool.dead("bad", limit=2, cursor=page.next_cursor)
    assert {m.id for m in page.messages + rest.messages} >= set(ids)
    one = spool.redrive("bad", [ids[0], "not-a-dead-letter"])
    assert one.redriven == 1 and one.skipped == ["not-a-dead-letter"]
    assert spool.wait(ids[0], timeout=20).status == "failed"  # it fails again: dead again
    everything = spool.redrive("bad")
    assert everything.redriven >= 3 and everything.skipped == []


def test_unknown_queue_and_message_are_not_found(spool: Client) -> None:
    with pytest.raises(NotFound):
        spool.publish("nope", 1)
    with pytest.raises(NotFound):
        spool.get("0190b6e4-0000-7000-8000-000000000000")
    with pytest.raises(NotFound):
        spool.dead("nope")


def test_missing_or_wrong_token_is_unauthorized(server: Server) -> None:
    with Client(server.url, token="") as anonymous, pytest.raises(Unauthorized) as caught:
        anonymous.queues()
    assert caught.value.status == 401
    with Client(server.url, token="wrong") as wrong, pytest.raises(Unauthorized):
        wrong.get("x")


def test_a_scope_that_does_not_allow_it_is_forbidden(server: Server) -> None:
    with Client(server.url, token=READ) as reader:
        assert reader.queues()
        with pytest.raises(Forbidden) as caught:
            reader.pause("work")
        assert "admin" in caught.value.detail
    with Client(server.url, token=PUBLISH) as publisher, pytest.raises(Forbidden):
        publisher.queues()


def test_invalid_names_the_field(spool: Client) -> None:
    with pytest.raises(Invalid) as caught:
        spool.publish("work", 1, priority=10)
    assert caught.value.field == "priority" and caught.value.status == 422
    with pytest.raises(Invalid) as batch:
        spool.publish_batch("work", [Envelope(body=1), Envelope(body=2, delay_s=-1)])
    assert batch.value.field == "messages[1].delay_s"


def test_too_large_and_bad_request(spool: Client) -> None:
    with pytest.raises(PayloadTooLarge):
        spool.publish("work", "x" * 5000)
    with pytest.raises(BadRequest) as caught:
        spool.dead("work", limit=0)
    assert "limit" in caught.value.detail


def test_a_plain_text_body_maps_to_unsupported_media_type(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/v1/queues/work/messages",
        content=b"hello",
        headers={"Content-Type": "text/plain", "Authorization": f"Bearer {ADMIN}"},
    )
    error = error_from(response)
    assert isinstance(error, UnsupportedMediaType) and error.status == 415


def test_queue_full_is_retried_within_the_budget_then_raised(server: Server) -> None:
    with Client(server.url, token=ADMIN, retries=2, retry_budget_s=30) as spool:
        spool.pause("full")
        try:
            held = spool.publish("full", 0)
            before = count_429(server)
            started = time.monotonic()
            with pytest.raises(QueueFull) as caught:
                spool.publish("full", 1)
            assert caught.value.retry_after is not None and caught.value.retry_after >= 1
            assert count_429(server) - before == 3  # the first try and two retries
            assert time.monotonic() - started >= 2 * caught.value.retry_after * 0.9
        finally:
            spool.cancel(held.id)
            spool.resume("full")


def test_the_retry_budget_bounds_the_total_wait(server: Server) -> None:
    with Client(server.url, token=ADMIN, retries=10, retry_budget_s=1.5) as spool:
        spool.pause("full")
        try:
            held = spool.publish("full", 0)
            before = count_429(server)
            with pytest.raises(QueueFull):
                spool.publish("full", 1)
            assert count_429(server) - before == 2  # 1 s waited; another 1 s would pass 1.5
        finally:
            spool.cancel(held.id)
            spool.resume("full")


class LoseFirstAnswer(httpx.BaseTransport):
    """A proxy in front of the real server that lets the first publish through but loses
    its answer, sending the client a 503 instead (as a load balancer can)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/messages"):
            self.keys.append(request.read())
            if len(self.keys) == 1:
                response.read()
                response.close()
                return httpx.Response(503, headers={"Retry-After": "0"}, content=b"")
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_retried_publish_never_enqueues_twice(server: Server) -> None:
    transport = LoseFirstAnswer()
    with Client(server.url, token=ADMIN, transport=transport) as spool:
        before = spool.queue("later").counts.published
        message = spool.publish("later", {"once": True}, delay_s=60)
        assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
        assert b'"idempotency_key":"spool-client-' in transport.keys[0]
        assert spool.queue("later").counts.published == before + 1  # exactly one message
        assert spool.get(message.id).body == {"once": True}
        spool.cancel(message.id)


def test_a_draining_server_is_unavailable_with_its_retry_after(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES, "[server]\ngraceful_timeout_s = 30\n"))
    server.start()
    with Client(server.url, retries=3, retry_budget_s=2) as spool:
        slow = spool.publish("slow", gate_body(tmp_path, "release"))  # holds the drain open
        wait_until(lambda: spool.get(slow.id).status == "running", "the handler running")
        server.signal()
        refused: Unavailable | None = None
        for _ in range(100):  # the stop is asynchronous: publish until it refuses
            try:
                spool.publish("work", 1)
            except Unavailable as exc:
                refused = exc
                break
            time.sleep(0.05)
        assert refused is not None, "publishing was never refused while draining"
        assert refused.status == 503 and refused.retry_after == 5
    (tmp_path / "release").touch()
    assert server.wait_exit(30) == 0


def test_an_unreachable_server_is_connection_failed() -> None:
    spool = Client(f"http://127.0.0.1:{free_port()}", timeout=2)
    with spool, pytest.raises(ConnectionFailed):
        spool.queues()


async def test_async_client_does_the_same(server: Server) -> None:
    async with AsyncClient(server.url, token=ADMIN) as spool:
        message = await spool.publish("work", [1, 2])
        done = await spool.wait(message.id, timeout=20)
        assert done.status == "succeeded" and done.result == [1, 2]
        assert (await spool.get(message.id)).id == message.id
        batch = await spool.publish_batch("later", [Envelope(body=1, delay_s=60)])
        assert (await spool.cancel(batch[0].id)).status == "cancelled"
        assert [q.name for q in await spool.queues()][:1] == ["work"]
        assert (await spool.pause("later")).paused
        assert not (await spool.resume("later")).paused
        assert (await spool.queue("later")).name == "later"
        failed = await spool.publish("bad", "x")
        assert (await spool.wait(failed.id, timeout=20)).status == "failed"
        assert failed.id in {m.id for m in (await spool.dead("bad", limit=1000)).messages}
        assert (await spool.redrive("bad", [failed.id])).redriven == 1
        with pytest.raises(Invalid):
            await spool.publish("work", 1, delay_s=-1)
    async with AsyncClient(server.url, token=READ) as reader:
        with pytest.raises(Forbidden):
            await reader.pause("work")
