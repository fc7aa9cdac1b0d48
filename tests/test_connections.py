"""Connections and file descriptors over a real `python -m service`: sockets the client has
closed are released at once, the open files limit is raised at start, and running out of
file descriptors is answered, logged once, and recovered from."""

from __future__ import annotations

import http.client
import json
import os
import resource
import selectors
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from service.fdlimit import WARN_EVERY_S

from .conftest import Server, toml_config

pytestmark = pytest.mark.slow

T = TypeVar("T")

QUEUES = '[queues.work]\nhandler = "tests.handlers:echo"\n'
# Hypercorn's keep-alive timer (grace.HEAD_TIMEOUT_S, 5 s) is what closed these sockets
# before; released "at once" means well inside it, whatever the machine's load.
RELEASE_WITHIN_S = 2.0
# /proc/net/tcp's state codes (include/net/tcp_states.h).
TCP_STATES = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN"}
OUT_OF_FDS_WARNING = "out of file descriptors"
ASYNCIO_DEFAULT_MESSAGE = "socket.accept() out of system resource"


def server_connections(pid: int, port: int) -> list[str]:
    """The TCP states of the sockets `pid` holds for connections on `port` (not the
    listening one): a socket the server has closed is no longer among its fds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                state, inode = fields[3], fields[9]
                if local_port == port and state != "0A" and inode in inodes:
                    states.append(TCP_STATES.get(state, state))
    return sorted(states)


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """read() until done(value) or the deadline; returns the last value read."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


def healthz(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    assert response.status == 200
    response.read()


def test_connections_the_client_closed_are_released_not_left_in_close_wait(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, QUEUES))
    server.start()
    assert server.process is not None
    pid = server.process.pid
    # A keep-alive connection the client holds open must stay open: only closed ones go.
    keeper = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    healthz(keeper)
    half_closed: list[socket.socket] = []
    try:
        for _ in range(50):  # the client reads its answer, then closes the connection
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            healthz(conn)
            conn.close()
        for _ in range(10):  # the client reads its answer, then half-closes
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            half_closed.append(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: spool\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200
            response.read()
            sock.shutdown(socket.SHUT_WR)
        left = poll(
            lambda: server_connections(pid, server.port),
            lambda states: states == ["ESTABLISHED"],
            RELEASE_WITHIN_S,
        )
        assert left == ["ESTABLISHED"], f"still held after the clients closed: {left}"
        for sock in half_closed:
            assert sock.recv(1) == b""  # the server closed its side too
        healthz(keeper)  # the kept connection still serves
    finally:
        keeper.close()
        for sock in half_closed:
            sock.close()
    left = poll(lambda: server_connections(pid, server.port), lambda s: not s, RELEASE_WITHIN_S)
    assert left == []
    assert server.stop() == 0


def open_files_limit(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open files limit for {pid}")


def test_serve_raises_the_soft_open_files_limit_to_the_hard_limit(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = 128
    assert hard > soft, f"this test needs a hard open files limit above {soft}, not {hard}"
    server = server_factory(toml_config(tmp_path, QUEUES))
    server.open_files_limit = (soft, hard)
    server.start()
    assert server.process is not None
    assert open_files_limit(server.process.pid) == (hard, hard)
    server.wait_log(f"open files limit raised from {soft} to {hard}")
    assert server.stop() == 0


def read_answers(clients: list[socket.socket], timeout: float) -> list[bytes]:
    """What the server sent each client that it answered (until the first 503 or the
    deadline); b"" for a connection it closed without a word."""
    answers: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(answers):
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                answer = b""
                while chunk := sock.recv(65536):  # the server closes once it has answered
                    answer += chunk
                answers.append(answer)
    return answers


def check_unavailable(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer
    headers = head.lower().split(b"\r\n")[1:]
    assert b"content-type: application/problem+json" in headers, answer
    assert b"retry-after: 1" in headers, answer
    doc = json.loads(body)
    assert doc["status"] == 503
    assert doc["type"].endswith("/unavailable")
    assert "file descriptors" in doc["detail"]


def test_out_of_file_descriptors_answers_503_warns_and_serves_again(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    limit = 64
    server = server_factory(toml_config(tmp_path, QUEUES))
    server.open_files_limit = (limit, limit)
    server.start()
    assert server.process is not None
    pid = server.process.pid
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    started = time.monotonic()
    # Idle connections that take every free fd, and 40 more that find none left.
    clients: list[socket.socket] = []
    try:
        for _ in range(limit - in_use + 40):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        log = server.wait_log(OUT_OF_FDS_WARNING, timeout=15)
        answers = read_answers(clients, timeout=15)
        assert any(answers), "no client was answered while the server was out of fds"
        for answer in filter(None, answers):
            check_unavailable(answer)
    finally:
        for client in clients:
            client.close()
    warning = next(line for line in log.splitlines() if OUT_OF_FDS_WARNING in line)
    assert f"limit {limit}" in warning and "ulimit -n" in warning, warning
    assert ASYNCIO_DEFAULT_MESSAGE not in log
    server.wait_ready(timeout=15)  # serves again once the clients have gone
    log = server.log()
    warnings = log.count(OUT_OF_FDS_WARNING)
    assert warnings <= 1 + (time.monotonic() - started) / WARN_EVERY_S, log
    left = poll(lambda: server_connections(pid, server.port), lambda s: not s, 15)
    assert left == []
    assert server.stop() == 0
