"""Load and follow-up for the graceful-stop tests (tests/test_shutdown.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


class Publisher(threading.Thread):
    """Publishes in a loop until stopped; records every 202 and every refusal."""

    def __init__(self, url: str, queue: str, bodies: Callable[[int], dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.url, self.queue, self.bodies = url, queue, bodies
        self.accepted: list[str] = []
        self.refused: list[httpx.Response] = []
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            n = 0
            while not self.halt.is_set() and n < 5000:
                try:
                    r = client.post(f"/v1/queues/{self.queue}/messages", json=self.bodies(n))
                except httpx.HTTPError:
                    self.errors += 1  # the listener has closed: the stop is over
                    time.sleep(0.05)
                    continue
                n += 1
                if r.status_code == 202:
                    self.accepted.append(r.json()["id"])
                else:
                    self.refused.append(r)
                    time.sleep(0.01)


def follow_to_final(url: str, ids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Every id's message once it is final (fails if any is unknown or never final)."""
    deadline = time.monotonic() + timeout
    final: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=url, timeout=15) as client:
        for mid in ids:
            while True:
                r = client.get(f"/v1/messages/{mid}", params={"wait": 5})
                assert r.status_code == 200, f"acknowledged message {mid} lost: {r.text}"
                doc = r.json()
                if doc["status"] in ("succeeded", "failed", "cancelled"):
                    final[mid] = doc
                    break
                assert time.monotonic() < deadline, f"{mid} never final: {doc}"
    return final


def snapshot_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()[1:] if line.strip()]


def status_of(client: httpx.Client, message_id: str) -> str:
    status: str = client.get(f"/v1/messages/{message_id}").json()["status"]
    return status


def open_long_poll(port: int, message_id: str) -> socket.socket:
    """A raw long-poll, so the test can see (tests/waits.py) when the server has read it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=70)
    sock.sendall(
        f"GET /v1/messages/{message_id}?wait=60 HTTP/1.1\r\nHost: t\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    return sock


def read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return answer


def running_count(client: httpx.Client, queue: str) -> int:
    running: int = client.get(f"/v1/queues/{queue}").json()["depth"]["running"]
    return running
