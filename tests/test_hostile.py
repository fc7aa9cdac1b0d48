"""A catalogue of hostile requests over a raw socket against a real server.

Each gets its documented 4xx (or, where the HTTP layer cannot answer, a closed connection),
never a 5xx and never a hang; and the server answers a normal request right after each.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import Server, free_port, toml_config
from .hostile_catalogue import (
    BAD_HOSTS,
    CLOSED,
    CUT_OFF_WITHIN_S,
    PUBLISH,
    Case,
    case,
    catalogue,
    get,
    post,
)

pytestmark = pytest.mark.slow


def exchange(port: int, c: Case, timeout: float = CUT_OFF_WITHIN_S) -> tuple[int, bytes, float]:
    """Send the case; return (status or CLOSED, raw response head, seconds taken)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # Filled as it comes: what came before a reset is still the answer.
        received = bytearray()
        try:
            send_chunks(sock, c)
            receive_answer(sock, received)
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError as exc:
            raise AssertionError(f"{c.name}: no answer within {timeout}s") from exc
    took = time.monotonic() - started
    if not received:
        return CLOSED, b"", took
    status_line = received.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), bytes(received), took


def send_chunks(sock: socket.socket, c: Case) -> None:
    for i, chunk in enumerate(c.chunks):
        if i and c.pause:
            time.sleep(c.pause)
        if chunk:
            sock.sendall(chunk)


def receive_answer(sock: socket.socket, received: bytearray) -> None:
    """Reads into `received` the final answer (interim 100 Continues dropped), up to its end
    or the close."""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        received += data
        while received.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in received:
            del received[: received.index(b"\r\n\r\n") + 4]  # an interim 100 Continue
        if b"\r\n\r\n" in received and response_complete(bytes(received)):
            return


def response_complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


CASES = list(catalogue())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole catalogue (server_factory is per test)."""
    tmp_path: Path = tmp_path_factory.mktemp("hostile")
    queues = '[queues.work]\nhandler = "tests.handlers:echo"\n'
    extra = (
        "[server]\nmax_body_bytes = 4096\nmax_batch = 5\n"
        '[auth]\ntokens = ["admin:admin-secret", "read:read-secret", "publish:pub-secret"]\n'
    )
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(toml_config(tmp_path, queues, extra))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env.update({"SPOOL_SERVER__BIND": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"})
    srv = Server(config, port, tmp_path / "server.log", env)
    srv.start()
    try:
        yield srv
        assert srv.stop() == 0, srv.log()
        errors = [line for line in srv.log().splitlines() if line[24:29] == "ERROR"]
        assert "Traceback" not in srv.log() and not errors, srv.log()
    finally:
        srv.kill()


def assert_serves_normally(port: int) -> None:
    status, raw, _ = exchange(port, case("normal", get("/v1/queues/work")), timeout=10)
    assert status == 200, raw


def check(server: Server, c: Case) -> None:
    status, raw, took = exchange(server.port, c)
    assert status in c.expect, f"{c.name}: got {status}, expected {sorted(c.expect)}\n{raw[:500]!r}"
    assert status < 500 or (status == 501 and c.name == "unsupported transfer-encoding")
    assert took < CUT_OFF_WITHIN_S, f"{c.name}: took {took:.1f}s"
    if status != CLOSED:
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
        if status >= 400 and b"content-length: 0" not in raw.lower():
            body = raw.split(b"\r\n\r\n", 1)[1]
            if b"application/problem+json" in raw.lower() or status >= 402:
                assert b"Traceback" not in body
            if b"application/problem+json" in raw.lower():  # every answer of the app's own
                assert "x-request-id: " in head, f"{c.name}: no X-Request-ID\n{head}"
        for name, value in c.headers.items():
            assert f"{name.lower()}: {value.lower()}" in head, f"{c.name}: no {name}\n{head}"
    assert_serves_normally(server.port)


def test_catalogue_is_long_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("c", [c for c in CASES if not c.pause], ids=lambda c: c.name)
def test_hostile_request(server: Server, c: Case) -> None:
    check(server, c)


def test_slow_clients_are_cut_off_in_seconds(server: Server) -> None:
    slow = [c for c in CASES if c.pause]
    assert slow
    with ThreadPoolExecutor(len(slow)) as pool:
        for future in [pool.submit(check, server, c) for c in slow]:
            future.result()
    assert "Traceback" not in server.log()


def test_long_poll_is_not_cut_off_by_the_head_or_body_timeouts(server: Server) -> None:
    publish = post(PUBLISH, b'{"body": 1, "delay_s": 30}')
    status, raw, _ = exchange(server.port, case("publish", publish))
    assert status == 202
    mid = raw.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
    status, raw, took = exchange(
        server.port, case("poll", get(f"/v1/messages/{mid}?wait=12")), timeout=30
    )
    assert status == 200, raw
    assert took >= 11


def test_access_log_cannot_be_forged_through_the_path(server: Server) -> None:
    forged = "x%0A2026-01-01%2000:00:00,000%20ERROR%20service:%20forged%00"
    status, _, _ = exchange(server.port, case("forge", get(f"/v1/messages/{forged}")))
    assert status == 404
    server.wait_log("/v1/messages/x%0A2026")
    log = server.log_path.read_bytes()
    assert b"\x00" not in log
    assert not any(line.startswith(b"2026-01-01") for line in log.splitlines())
    assert b"/v1/messages/x%0A2026" in log


@pytest.mark.parametrize("probe", ["/healthz", "/readyz"])
@pytest.mark.parametrize("host", BAD_HOSTS, ids=lambda h: repr(h[:12]))
def test_probes_answer_whatever_the_host_says(server: Server, probe: str, host: str) -> None:
    status, raw, _ = exchange(server.port, case("probe", get(probe, auth="", host=host)))
    assert status == 200, raw
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower() and b"x-request-id: " in head.lower()
    assert body.startswith(b'{"status":'), raw
