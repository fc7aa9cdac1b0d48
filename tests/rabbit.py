"""A private RabbitMQ for the tests: Debian's rabbitmq-server on loopback, with its own ports,
directories, Erlang cookie and epmd, started once per session and stopped (epmd included).

Where rabbitmq-server is not installed the amqp tests skip with the reason, unless
SPOOL_REQUIRE_RABBITMQ=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
SERVER = RABBIT_BIN / "rabbitmq-server"
CTL = RABBIT_BIN / "rabbitmqctl"
START_TIMEOUT_S = 90.0


def unavailable_reason() -> str | None:
    if not SERVER.exists() or shutil.which("erl") is None:
        return f"RabbitMQ is not installed ({SERVER} missing): apt-get install rabbitmq-server"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Rabbit:
    """One RabbitMQ node under `base`; `url` is its AMQP URL. start/stop/restart are blocking."""

    base: Path
    node_port: int = field(default_factory=_free_port)
    dist_port: int = field(default_factory=_free_port)
    epmd_port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.node_port}/"

    @property
    def nodename(self) -> str:
        return "spooltest@localhost"

    def env(self) -> dict[str, str]:
        home = self.base / "home"
        home.mkdir(parents=True, exist_ok=True)
        plugins = self.base / "enabled_plugins"
        if not plugins.exists():
            plugins.write_text("[].\n")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.node_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_LOGS": str(self.base / "log" / "rabbit.log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base / "plugins-expand"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
            "RABBITMQ_ALLOW_INPUT": "",
        }

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "stdout.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [str(SERVER)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        try:
            self._ctl("await_startup", timeout=START_TIMEOUT_S)
        except Exception:
            self.stop()
            raise

    def _ctl(self, *args: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited:\n{self.log()}")
            done = subprocess.run(
                [str(CTL), "-n", self.nodename, *args],
                env=self.env(),
                capture_output=True,
                timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )
            if done.returncode == 0:
                return done.stdout.decode(errors="replace")
            last = done.stderr.decode(errors="replace")
            time.sleep(0.5)
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {last}\n{self.log()}")

    def stop(self) -> None:
        """Stops the broker (SIGTERM, then SIGKILL) and its epmd."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._kill_epmd()

    def kill(self) -> None:
        """kill -9 of the broker, as a crash would stop it (epmd stays, as it would)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _kill_epmd(self) -> None:
        """epmd daemonises out of our process group: find ours by its private port."""
        try:
            subprocess.run(
                ["epmd", "-port", str(self.epmd_port), "-kill"],
                env=self.env(),
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
        for pid in _pids_with_arg(f"-port {self.epmd_port}", "epmd"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self) -> str:
        path = self.base / "log" / "rabbit.log"
        parts = [p.read_text(errors="replace")[-4000:] for p in (path,) if p.exists()]
        out = self.base / "stdout.log"
        if out.exists():
            parts.append(out.read_text(errors="replace")[-4000:])
        return "\n".join(parts)


def _pids_with_arg(needle: str, name: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if name in cmd and needle in cmd:
            pids.append(int(proc.name))
    return pids


async def delete_spool_queues(url: str, queues: list[str]) -> None:
    """Deletes everything Spool declared for `queues` (and the events stream), so the next
    test starts on an empty broker."""
    import aio_pika

    from service.broker.amqp import topology

    names = [topology.EVENTS]
    for q in queues:
        names += [topology.work(q), topology.due(q), topology.dead(q), topology.state(q)]
        names += [topology.wait(q, step) for step in range(topology.LADDER_STEPS)]
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
