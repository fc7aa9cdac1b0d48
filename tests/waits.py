"""Bounded waits on what a live server has done, for tests that must not guess how long it
takes: each polls the real condition until a deadline and fails naming what never came.
With the gate handlers (tests/handlers.py) a test also decides when a handler ends."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import Server


def server_has_read(server_port: int, client_port: int) -> bool:
    """True once the server's end of the connection from `client_port` holds no unread bytes:
    the server has taken in what the client sent. Over loopback, sendall() returns only once
    the bytes sit in the server's receive queue, so this cannot be true too early."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)) == (
            server_port,
            client_port,
        ):
            return int(queues.split(":")[1], 16) == 0
    return False


def wait_read(server: Server, sock: socket.socket, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not server_has_read(server.port, sock.getsockname()[1]):
        assert time.monotonic() < deadline, "the server never read the request"
        time.sleep(0.01)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.02)


async def until(
    condition: Callable[[], bool], what: str = "condition", timeout: float = 10
) -> None:
    """wait_until() for a test on the event loop: it yields to the loop between looks."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.01)


def gate_body(tmp_path: Path, name: str, *, fail: bool = False) -> dict[str, Any]:
    """The body of a gate handler's message: it runs until tmp_path/name exists."""
    started = str(tmp_path / f"{name}.started")
    return {"release": str(tmp_path / name), "started": started, "fail": fail}


def started_ids(path: Path) -> list[str]:
    """The ids a gate handler (tests/handlers.py) has begun, once each per attempt."""
    return path.read_text().split() if path.exists() else []
