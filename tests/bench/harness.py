"""What every benchmark shares: servers pinned to a CPU, wrk with the report script, A/B pair
ratios, correctness checks and the record of the machine."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from ..conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
REPORT_LUA = BENCH / "lua" / "report.lua"

SERVER_CPU = 0  # the server under test (and its handler threads) runs here…
LOAD_CPU = 1  # …and the load generator here, where the benchmark measures throughput


class BenchFailure(AssertionError):
    """A correctness check failed: a message was lost, or a response was a 5xx."""


@dataclass
class Mode:
    quick: bool

    @property
    def pairs(self) -> int:
        return 2 if self.quick else 3

    def seconds(self, full: float, quick: float) -> float:
        return quick if self.quick else full


@dataclass
class Result:
    id: str
    title: str
    measure: str
    target: str = ""
    ratio: float | None = None
    spread: tuple[float, float] | None = None
    met: bool | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    note: str = ""
    extra: list[Result] = field(default_factory=list)  # sub-results (B4 peers, B5 modes…)


def pair_ratios(
    pairs: int, subject: Callable[[], float], reference: Callable[[], float]
) -> tuple[list[float], list[float], list[float]]:
    """Runs subject and reference alternately (A B A B …); returns both series and the ratios."""
    subjects: list[float] = []
    references: list[float] = []
    for _ in range(pairs):
        subjects.append(subject())
        references.append(reference())
    return subjects, references, [a / b for a, b in zip(subjects, references, strict=True)]


def summarise(
    result: Result,
    subjects: list[float],
    references: list[float],
    ratios: list[float],
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    unit: str = "",
) -> Result:
    result.ratio = statistics.median(ratios)
    result.spread = (min(ratios), max(ratios))
    result.figures.update(
        subject=statistics.median(subjects),
        reference=statistics.median(references),
        unit=unit,
        subject_runs=subjects,
        reference_runs=references,
        ratios=ratios,
    )
    if at_least is not None:
        result.met = result.ratio >= at_least
        result.target = f">= {at_least:g}"
    elif at_most is not None:
        result.met = result.ratio <= at_most
        result.target = f"<= {at_most:g}"
    return result


# --------------------------------------------------------------------------- processes
def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """argv under `taskset -c cpu` where there are two CPUs and taskset exists."""
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


@dataclass
class Server:
    """A server subprocess on a loopback port, its log in a temporary folder."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str]
    cpu: int | None = SERVER_CPU
    ready_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                pinned(self.cpu, self.argv),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}: {self.tail()}"
                )
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout:g} s: {self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def tail(self, lines: int = 15) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as path:
        yield Path(path)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spool_server(
    tmp: Path, name: str, queues: str, extra: str = "", cpu: int | None = SERVER_CPU
) -> Server:
    """`python -m service` with the given [queues.*] tables (and sections), as users run it."""
    port = free_port()
    config = tmp / f"{name}.toml"
    config.write_text(
        f'[server]\nbind = "127.0.0.1:{port}"\n'
        f'[broker]\nsnapshot_path = "{tmp / (name + ".snapshot")}"\n'
        f'sqlite_path = "{tmp / (name + ".db")}"\n{extra}\n{queues}\n'
    )
    argv = [sys.executable, "-m", "service", "--config", str(config)]
    return Server(name, argv, port, tmp / f"{name}.log", base_env(), cpu)


def module_server(tmp: Path, name: str, module: str, cpu: int | None = SERVER_CPU) -> Server:
    """A reference server: `python -m module --port P`."""
    port = free_port()
    argv = [sys.executable, "-m", module, "--port", str(port)]
    return Server(name, argv, port, tmp / f"{name}.log", base_env(), cpu)


@contextmanager
def serving(*servers: Server) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- wrk
@dataclass
class Load:
    requests: int
    seconds: float
    statuses: dict[int, int]
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def count(self, low: int, high: int) -> int:
        return sum(n for code, n in self.statuses.items() if low <= code < high)

    def check(self, what: str, expect: int | None = None) -> None:
        """No 5xx, no socket error; with `expect`, every response had that status."""
        server_errors = self.count(500, 600)
        if server_errors:
            raise BenchFailure(f"{what}: {server_errors} responses were 5xx ({self.statuses})")
        if expect is not None and self.statuses.get(expect, 0) != sum(self.statuses.values()):
            raise BenchFailure(f"{what}: expected only {expect}, got {self.statuses}")
        broken = {k: v for k, v in self.errors.items() if v and k != "status"}
        if broken:
            raise BenchFailure(f"{what}: wrk reported socket errors {broken}")


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    body: bytes | None = None,
    threads: int = 1,
    cpu: int | None = LOAD_CPU,
    token: str = "",
) -> Load:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    env = base_env()
    env["BENCH_AUTH"] = token
    with tempfile.NamedTemporaryFile(suffix=".json") as body_file:
        if body is not None:
            body_file.write(body)
            body_file.flush()
            env["BENCH_BODY_FILE"] = body_file.name
        argv = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(REPORT_LUA),
            url,
        ]
        proc = subprocess.run(
            pinned(cpu, argv), env=env, capture_output=True, text=True, timeout=seconds + 60
        )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            doc = json.loads(line.removeprefix("BENCH_JSON "))
            return Load(
                requests=doc["requests"],
                seconds=doc["duration_us"] / 1e6,
                statuses={int(k): v for k, v in doc["statuses"].items()},
                errors=doc["errors"],
                p50_ms=doc["p50_us"] / 1000,
                p99_ms=doc["p99_us"] / 1000,
            )
    raise RuntimeError(f"wrk gave no summary (exit {proc.returncode}): {proc.stderr[-500:]}")


# --------------------------------------------------------------------------- Spool over HTTP
def queue_figures(url: str, queue: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{url}/v1/queues/{queue}", timeout=10).json()
    return doc


def admin(url: str, path: str) -> None:
    response = httpx.post(url + path, timeout=10)
    if response.status_code != 200:
        raise BenchFailure(f"POST {path}: {response.status_code} {response.text[:200]}")


def drain_and_check(url: str, queue: str, accepted: int, timeout: float = 120.0) -> dict[str, Any]:
    """Resume the queue, wait until nothing is left, and check that every message that was
    accepted (at least `accepted`: wrk does not count requests still in flight at its end)
    was published and succeeded."""
    admin(url, f"/v1/queues/{queue}/resume")
    deadline = time.monotonic() + timeout
    while True:
        doc = queue_figures(url, queue)
        depth, counts = doc["depth"], doc["counts"]
        live = depth["queued"] + depth["running"] + depth["scheduled"] + depth["retrying"]
        if live == 0:
            break
        if time.monotonic() > deadline:
            raise BenchFailure(f"{queue}: {live} messages still live after {timeout:g} s")
        time.sleep(0.2)
    if counts["published"] < accepted:
        raise BenchFailure(f"{queue}: {accepted} accepted but {counts['published']} published")
    if counts["succeeded"] != counts["published"] or depth["dead"] or counts["failed"]:
        raise BenchFailure(f"{queue}: published {counts['published']}, outcome {counts}")
    return doc


# --------------------------------------------------------------------------- the machine
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def versions() -> dict[str, str]:
    from service import __version__

    found = {"python": platform.python_version(), "spool": __version__}
    for name in ("quart", "hypercorn", "msgspec", "uvloop", "taskiq", "huey", "flask"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        found["wrk"] = (out.stdout or out.stderr).split(" [")[0].removeprefix("wrk ").strip()
    return found


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "pinning": shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2,
    }
