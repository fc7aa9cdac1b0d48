"""The built-in handlers do the work they say: checksum hashes, webhook POSTs to a real
receiver on a real socket and fails on a non-2xx answer."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service import Settings
from service.handlers import checksum, echo

from .conftest import client_for
from .contract.helpers import publish, wait_final


def test_checksum_rehashes_the_data_rounds_times() -> None:
    digest = hashlib.sha256(b"spool").digest()
    for _ in range(4):
        digest = hashlib.sha256(digest).digest()
    assert checksum({"data": "spool", "rounds": 5}) == {"sha256": digest.hex(), "rounds": 5}


def test_checksum_of_any_other_body_hashes_its_json_once() -> None:
    expected = hashlib.sha256(b'[1,"two"]').hexdigest()
    assert checksum([1, "two"]) == {"sha256": expected, "rounds": 1}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"data": 5}, TypeError),
        ({"data": "x", "rounds": 0}, ValueError),
        ({"data": "x", "rounds": True}, ValueError),
        ({"data": "x", "rounds": 10**9}, ValueError),
    ],
)
def test_checksum_refuses_bad_parameters(body: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        checksum(body)


def test_echo_returns_the_body() -> None:
    assert echo({"a": [1, 2]}) == {"a": [1, 2]}


class Receiver:
    """An HTTP server on a loopback port that records what it is sent."""

    def __init__(self, status: int) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                receiver.requests.append(
                    (dict(self.headers.items()), json.loads(self.rfile.read(size)))
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], Receiver]]:
    made: list[Receiver] = []

    def build(status: int) -> Receiver:
        made.append(Receiver(status))
        return made[-1]

    yield build
    for receiver in made:
        receiver.close()


def webhook_queue(url: str) -> dict[str, Any]:
    return {
        "handler": "service.handlers:webhook",
        "mode": "async",
        "max_retries": 0,
        "options": {"url": url, "headers": {"X-Source": "spool"}},
    }


async def test_webhook_posts_the_body_with_the_message_id_as_idempotency_key(
    tmp_settings: Callable[..., Settings], receiver_factory: Callable[[int], Receiver]
) -> None:
    receiver = receiver_factory(204)
    async with client_for(tmp_settings({"hooks": webhook_queue(receiver.url)})) as (client, _):
        msg = await publish(client, "hooks", {"order": 7})
        done = await wait_final(client, msg["id"])
    assert done["status"] == "succeeded" and done["result"] == {"status": 204}
    [(headers, body)] = receiver.requests
    assert body == {"order": 7}
    assert headers["Idempotency-Key"] == msg["id"]
    assert headers["X-Source"] == "spool"


async def test_webhook_fails_the_attempt_on_a_non_2xx_answer(
    tmp_settings: Callable[..., Settings], receiver_factory: Callable[[int], Receiver]
) -> None:
    receiver = receiver_factory(503)
    async with client_for(tmp_settings({"hooks": webhook_queue(receiver.url)})) as (client, _):
        msg = await publish(client, "hooks", {"order": 8})
        done = await wait_final(client, msg["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "WebhookError"
    assert "503" in done["error"]["message"]


async def test_webhook_without_an_http_url_fails_without_calling_anything(
    tmp_settings: Callable[..., Settings],
) -> None:
    async with client_for(tmp_settings({"hooks": webhook_queue("file:///etc/passwd")})) as (
        client,
        _,
    ):
        msg = await publish(client, "hooks", {})
        done = await wait_final(client, msg["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "ValueError"
