"""Shared fixtures: settings from a dict, an in-process app, a real server subprocess."""

from __future__ import annotations

import asyncio
import io
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart.typing import TestClientProtocol as Client

from service import Runtime, Settings, create_app
from service.broker import Broker
from service.config import settings_from_dict
from service.process import configure_process

from .rabbit import Rabbit, unavailable_reason

ROOT = Path(__file__).resolve().parent.parent


def make_settings(queues: dict[str, dict[str, Any]], **sections: dict[str, Any]) -> Settings:
    """Settings as config.toml would give them; `queues` maps name → [queues.NAME] table."""
    raw: dict[str, Any] = {k: dict(v) for k, v in sections.items()}
    raw["queues"] = {name: dict(table) for name, table in queues.items()}
    return settings_from_dict(raw)


@asynccontextmanager
async def running(settings: Settings, broker: Broker | None = None) -> AsyncIterator[Runtime]:
    """A Runtime whose run() is a task of this test; stopped (drained) on exit. The process
    is configured as `python -m service` configures it (process.py), so thread handlers
    share the GIL as they do when served."""
    configure_process(settings)
    runtime = Runtime(settings, broker=broker)
    task = asyncio.create_task(runtime.run())
    ready = asyncio.create_task(runtime.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises the start failure
    try:
        yield runtime
    finally:
        runtime.request_stop()
        runtime.request_stop()  # tests do not wait out a drain
        await stopped_within(task, 15)


async def stopped_within(task: asyncio.Task[None], timeout: float) -> None:
    """The runtime's task ends within `timeout` (SPEC bounds every stop). When it does not,
    the test fails showing where every task waits, instead of hanging in a cancellation
    that the stuck await may never honour (as asyncio.wait_for would)."""
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        stacks = io.StringIO()
        for other in asyncio.all_tasks():
            if other is not asyncio.current_task():
                other.print_stack(file=stacks)
        task.cancel()
        raise AssertionError(f"the runtime did not stop within {timeout} s\n{stacks.getvalue()}")
    task.result()


@asynccontextmanager
async def client_for(
    settings: Settings, broker: Broker | None = None
) -> AsyncIterator[tuple[Client, Runtime]]:
    async with running(settings, broker) as runtime:
        app = create_app(settings, runtime)
        async with app.test_app() as test_app:
            yield test_app.test_client(), runtime


@pytest.fixture
def tmp_settings(tmp_path: Path) -> Callable[..., Settings]:
    """make_settings with the snapshot and journal inside tmp_path."""

    def build(queues: dict[str, dict[str, Any]], **sections: dict[str, Any]) -> Settings:
        broker = {
            "snapshot_path": str(tmp_path / "snapshot.jsonl"),
            "sqlite_path": str(tmp_path / "spool.db"),
            **sections.pop("broker", {}),
        }
        return make_settings(queues, broker=broker, **sections)

    return build


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """`python -m service` as a user runs it, on a free loopback port."""

    config_path: Path
    port: int
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    # (soft, hard) RLIMIT_NOFILE for the server process, as `ulimit -n` would set them.
    open_files_limit: tuple[int, int] | None = None
    # Run before the interpreter (e.g. setpriv, to start without a capability).
    command_prefix: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 30) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
        self.process = subprocess.Popen(
            [
                *self.command_prefix,
                sys.executable,
                "-m",
                "service",
                "--config",
                str(self.config_path),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._set_limits if self.open_files_limit else None,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout)

    def _set_limits(self) -> None:
        assert self.open_files_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files_limit)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready within {timeout}s:\n{self.log()}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        """kill -9 of the whole process group (handlers' worker processes included)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait_exit(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 5.0) -> str:
        """The log once it holds `text`: routine lines reach it up to 50 ms late (logs.py)."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout}s:\n{log}")
            time.sleep(0.02)
        return log


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Writes a config.toml and returns a Server for it; every server is killed at the end."""
    servers: list[Server] = []

    def build(config: str, *, env: dict[str, str] | None = None, port: int | None = None) -> Server:
        index = len(servers)
        config_path = tmp_path / f"config{index}.toml"
        port = port or free_port()
        config_path.write_text(config)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
        full_env.update({"SPOOL_SERVER__BIND": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        server = Server(config_path, port, tmp_path / f"server{index}.log", full_env)
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.kill()


def toml_config(tmp_path: Path, queues: str, extra: str = "") -> str:
    """A config with the snapshot and journal inside tmp_path, plus the given queue tables."""
    return (
        f'[broker]\nsnapshot_path = "{tmp_path / "snapshot.jsonl"}"\n'
        f'sqlite_path = "{tmp_path / "spool.db"}"\n{extra}\n{queues}\n'
    )


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rabbit]:
    """A private RabbitMQ for the session (tests/rabbit.py); skips where it is not installed,
    unless SPOOL_REQUIRE_RABBITMQ=1 (CI), where that is a failure."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("SPOOL_REQUIRE_RABBITMQ") == "1":
            pytest.fail(f"SPOOL_REQUIRE_RABBITMQ=1 but {reason}")
        pytest.skip(reason)
    broker = Rabbit(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
