"""Clients that stop reading, over a real socket to `python -m service`.

A client that never reads fills the kernel's buffers and then the server's: every write to it
would wait forever. Such a client is disconnected (server.send_timeout_s), and it cannot hold
up a graceful stop past graceful_timeout_s + 5 s, whatever answer it is stuck in.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .conftest import Server, toml_config

pytestmark = pytest.mark.slow

EXIT_MARGIN_S = 5.0  # SPEC: a stop ends within graceful_timeout_s + 5 s
TCP_ESTABLISHED = 1
HELD = '[queues.held]\nhandler = "tests.handlers:echo"\nmax_size = 1000000\n'
BATCH = {"messages": [{"body": i} for i in range(1000)]}  # 1,000 `event: message` lines
EVENTS_REQUEST = b"GET /v1/events HTTP/1.1\r\nHost: spool\r\n\r\n"


def server_end(server_port: int, client: socket.socket) -> tuple[int, int] | None:
    """The server's socket to `client` as /proc/net/tcp shows it, read without recv():
    (TCP state, bytes it holds that the client has not taken), or None once it is gone."""
    client_port = client.getsockname()[1]
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[3], 16), int(fields[4].split(":")[0], 16)
    return None


def connected(server: Server, client: socket.socket) -> bool:
    end = server_end(server.port, client)
    return end is not None and end[0] == TCP_ESTABLISHED


@contextmanager
def stalled_client(port: int, request: bytes) -> Iterator[socket.socket]:
    """A client that sends `request` and never calls recv(), with a tiny receive buffer."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        yield sock


def open_streams(server: Server) -> int:
    streams: int = httpx.get(f"{server.url}/v1/node", timeout=10).json()["streams"]
    return streams


def fill_until_stuck(server: Server, client: socket.socket, publish: Callable[[], None]) -> None:
    """Calls `publish` (which makes the server write more to `client`) until what the server
    holds for the client stops growing twice in a row: the kernel takes no more, so what
    follows waits in the server's own write buffer. Fails after 150 rounds."""
    last, flat = -1, 0
    for _ in range(150):
        publish()
        end = server_end(server.port, client)
        unsent = end[1] if end is not None else 0
        flat = flat + 1 if unsent > 0 and unsent == last else 0
        last = unsent
        if flat == 2:
            publish()  # past the kernel's buffer: the server's write now waits
            return
    raise AssertionError(f"the server's send buffer never filled ({last} bytes unsent)")


def publish_batch(server: Server) -> None:
    r = httpx.post(f"{server.url}/v1/queues/held/messages/batch", json=BATCH, timeout=30)
    assert r.status_code == 202, r.text


def fill_event_stream(server: Server, client: socket.socket) -> None:
    """Publishes until the stalled `GET /v1/events` client's buffers are full."""
    deadline = time.monotonic() + 10
    while open_streams(server) != 1:
        assert time.monotonic() < deadline, "the stream never opened"
        time.sleep(0.05)
    fill_until_stuck(server, client, lambda: publish_batch(server))


def poll(server: Server, message_id: str) -> None:
    try:
        httpx.get(f"{server.url}/v1/messages/{message_id}", params={"wait": 60}, timeout=70)
    except httpx.HTTPError:
        pass  # cut off by the stop: what matters is that it does not hold the stop up


def test_an_event_stream_client_that_stops_reading_is_disconnected(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, HELD, "[server]\nsend_timeout_s = 2\n"))
    server.start()
    httpx.post(f"{server.url}/v1/queues/held/pause").raise_for_status()
    with stalled_client(server.port, EVENTS_REQUEST) as client:
        fill_event_stream(server, client)
        # The server lets go of the connection: a reset, which our end, its window closed,
        # need not even see. So it is watched from the server's side.
        deadline = time.monotonic() + 30
        while connected(server, client):
            assert time.monotonic() < deadline, "the server never closed the stuck stream"
            publish_batch(server)
            time.sleep(0.1)
        # Reading now gets what was buffered, then the end: not a stream that goes on.
        client.settimeout(10)
        try:
            while client.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
    deadline = time.monotonic() + 10
    while open_streams(server) != 0:
        assert time.monotonic() < deadline, "the stream was never let go"
        time.sleep(0.05)
    server.wait_log("took no bytes")
    with httpx.stream("GET", f"{server.url}/v1/events", timeout=10) as response:
        assert response.status_code == 200  # others are served as before
        assert next(response.iter_lines()).startswith("retry:")
    assert server.stop() == 0


@pytest.mark.parametrize(
    ("kind", "request_bytes"),
    [
        ("event stream", EVENTS_REQUEST),
        # Any answer: pipelined requests for a large document, none of it read.
        ("pipelined answers", b"GET /openapi.json HTTP/1.1\r\nHost: spool\r\n\r\n" * 400),
    ],
)
def test_sigterm_exits_in_time_while_a_client_that_stops_reading_is_connected(
    server_factory: Callable[..., Server], tmp_path: Path, kind: str, request_bytes: bytes
) -> None:
    graceful_s = 1
    # A send timeout far past the stop's bound: the stop itself must cut the client off.
    extra = f"[server]\ngraceful_timeout_s = {graceful_s}\nsend_timeout_s = 300\n"
    server = server_factory(toml_config(tmp_path, HELD, extra))
    server.start()
    httpx.post(f"{server.url}/v1/queues/held/pause").raise_for_status()
    unfinished = httpx.post(f"{server.url}/v1/queues/held/messages", json={"body": 0}).json()
    with stalled_client(server.port, request_bytes) as client:
        if kind == "event stream":
            fill_event_stream(server, client)
        else:
            fill_until_stuck(server, client, lambda: time.sleep(0.2))
        # A long-poll on a message that stays queued, open during the stop too.
        long_poll = threading.Thread(target=poll, args=(server, unfinished["id"]), daemon=True)
        long_poll.start()
        assert connected(server, client)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait_exit(graceful_s + EXIT_MARGIN_S + 30)
        took = time.monotonic() - signalled
        long_poll.join(10)
    assert code == 0, server.log()
    assert took < graceful_s + EXIT_MARGIN_S, f"stop took {took:.1f}s with a stuck {kind}"
    assert "Traceback" not in server.log()
