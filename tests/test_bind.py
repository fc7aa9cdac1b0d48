"""A start that cannot get its socket: one line naming the address, exit 1, and nothing
else done (no consumers, no snapshot or journal touched), whatever backend is configured.

Real processes throughout: a first Spool holds the port, a second is started as a user
would start it, and the files the first uses are compared byte for byte afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import Server, toml_config

QUEUES = '[queues.work]\nhandler = "tests.handlers:echo"\n[queues.held]\nhandler = "tests.handlers:echo"\n'
# Port 81 needs CAP_NET_BIND_SERVICE (ports below net.ipv4.ip_unprivileged_port_start, 1024
# by default): as root the test takes the capability away with setpriv, so it is refused.
PRIVILEGED_PORT = 81


def config(tmp_path: Path, backend: str) -> str:
    return toml_config(tmp_path, QUEUES, f'backend = "{backend}"')


def data_files(tmp_path: Path, backend: str) -> dict[str, bytes | None]:
    """What the backend keeps on disk, by name (None: absent)."""
    names = ["snapshot.jsonl"] if backend == "memory" else ["spool.db", "spool.db-wal"]
    return {
        name: (tmp_path / name).read_bytes() if (tmp_path / name).exists() else None
        for name in names
    }


def publish_and_finish(server: Server, queue: str = "work") -> None:
    answer = httpx.post(f"{server.url}/v1/queues/{queue}/messages", json={"body": "x"})
    answer.raise_for_status()
    message = httpx.get(
        f"{server.url}/v1/messages/{answer.json()['id']}?wait=10", timeout=20
    ).json()
    assert message["status"] == "succeeded", message


def assert_refused_with_one_line(second: Server, address: str) -> str:
    assert second.wait_exit(30) == 1
    log = second.log()
    lines = log.splitlines()
    assert len(lines) == 1, log
    assert address in lines[0] and "server.bind" in lines[0], log
    assert "Traceback" not in log
    return lines[0]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_second_server_on_a_taken_port_exits_with_one_line_and_touches_nothing(
    server_factory: Callable[..., Server], tmp_path: Path, backend: str
) -> None:
    first = server_factory(config(tmp_path, backend))
    first.start()
    publish_and_finish(first)
    # A message held by the first, in a paused queue: the first's stop must still persist it.
    assert httpx.post(f"{first.url}/v1/queues/held/pause").status_code == 200
    held = httpx.post(f"{first.url}/v1/queues/held/messages", json={"body": "kept"})
    held.raise_for_status()
    before = data_files(tmp_path, backend)

    second = server_factory(config(tmp_path, backend), port=first.port)
    second.start(wait_ready=False)
    line = assert_refused_with_one_line(second, f"127.0.0.1:{first.port}")
    assert "in use" in line

    assert data_files(tmp_path, backend) == before
    publish_and_finish(first)  # the first still serves
    assert first.stop() == 0
    if backend == "memory":
        assert b'"kept"' in (tmp_path / "snapshot.jsonl").read_bytes()


def test_a_snapshot_on_disk_is_left_alone_by_a_start_without_its_socket(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """A snapshot holding messages (a stopped node's) is neither read, run nor rewritten."""
    seed = server_factory(config(tmp_path, "memory"))
    seed.start()
    httpx.post(f"{seed.url}/v1/queues/work/pause").raise_for_status()
    httpx.post(f"{seed.url}/v1/queues/work/messages", json={"body": "x"}).raise_for_status()
    assert seed.stop() == 0
    snapshot = tmp_path / "snapshot.jsonl"
    held = tmp_path / "held.jsonl"
    shutil.copy(snapshot, held)
    before = (held.read_bytes(), os.stat(held))
    # Another Spool (a different snapshot) holds the port.
    other = server_factory(toml_config(tmp_path / "other", QUEUES))
    other.start()

    second = server_factory(
        config(tmp_path, "memory"),
        port=other.port,
        env={"SPOOL_BROKER__SNAPSHOT_PATH": str(held)},
    )
    second.start(wait_ready=False)
    assert_refused_with_one_line(second, f"127.0.0.1:{other.port}")

    after = os.stat(held)
    assert held.read_bytes() == before[0]
    assert (after.st_ino, after.st_mtime_ns) == (before[1].st_ino, before[1].st_mtime_ns)
    assert other.stop() == 0


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("nosuchhost.invalid", "cannot resolve"),  # .invalid never resolves (RFC 2606)
        ("192.0.2.1", "not an address of this host"),  # TEST-NET-1: on no interface here
        ("127.0.0.1", "permission denied"),  # a privileged port
    ],
)
def test_a_bind_address_that_cannot_be_used_exits_with_one_line_before_anything_starts(
    server_factory: Callable[..., Server], tmp_path: Path, backend: str, host: str, reason: str
) -> None:
    port = PRIVILEGED_PORT if reason == "permission denied" else 18_999
    server = server_factory(config(tmp_path, backend), port=port)
    server.env["SPOOL_SERVER__BIND"] = f"{host}:{port}"
    if reason == "permission denied" and os.geteuid() == 0:
        drop_bind_capability(server)
    server.start(wait_ready=False)
    line = assert_refused_with_one_line(server, f"{host}:{port}")
    assert reason in line.lower()
    assert data_files(tmp_path, backend) == dict.fromkeys(data_files(tmp_path, backend))
    assert not (tmp_path / "spool.db.lock").exists()


def drop_bind_capability(server: Server) -> None:
    """Runs the server without CAP_NET_BIND_SERVICE, as a non-root user would be."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to drop a capability as root"
    server.command_prefix = [setpriv, "--bounding-set", "-net_bind_service"]


def test_a_child_a_handler_starts_does_not_keep_the_port_after_the_server_ends(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """The listening socket is not inherited: a child that outlives Spool (a daemon, a shell
    os.system left running) must not hold the address the next start needs."""
    queues = '[queues.spawn]\nhandler = "tests.handlers:spawn_lingering"\nmode = "thread"\n'
    server = server_factory(toml_config(tmp_path, queues))
    server.start()
    answer = httpx.post(f"{server.url}/v1/queues/spawn/messages", json={"body": 120})
    done = httpx.get(f"{server.url}/v1/messages/{answer.json()['id']}?wait=10", timeout=20)
    child = int(done.json()["result"])
    try:
        assert server.stop() == 0
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Hypercorn binds
            sock.bind(("127.0.0.1", server.port))  # EADDRINUSE if the child holds it
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_second_memory_node_on_the_same_snapshot_refuses_to_start(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """Two memory nodes on one snapshot_path (other ports): whichever stops last would
    overwrite what the other wrote, and a snapshot left there would be read (and deleted)
    by a second start. Like the sqlite journal, the snapshot is one node's: the second
    stops with one line and writes nothing."""
    first = server_factory(config(tmp_path, "memory"))
    first.start()
    assert httpx.post(f"{first.url}/v1/queues/held/pause").status_code == 200
    httpx.post(f"{first.url}/v1/queues/held/messages", json={"body": "kept"}).raise_for_status()
    snapshot = tmp_path / "snapshot.jsonl"
    second = server_factory(config(tmp_path, "memory"))
    second.start(wait_ready=False)
    assert second.wait_exit(30) != 0
    lines = second.log().splitlines()
    assert len(lines) == 1 and "broker.snapshot_path" in lines[0], lines
    assert "in use by another Spool" in lines[0] and "Traceback" not in second.log()
    assert not snapshot.exists()  # the second wrote none
    assert first.stop() == 0
    assert b"kept" in snapshot.read_bytes()  # the first's stop wrote its held message
