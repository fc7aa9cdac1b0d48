"""kill -9 against the sqlite backend, as users run it: a real server under real load.

SPEC: sqlite survives kill -9 with no acknowledged message lost; messages that were running
run again; a process death while running counts as a failed attempt.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, Server, toml_config

CYCLES = 10
DRAIN_TIMEOUT_S = 60.0


def lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def backlog(server: Server) -> int:
    """Messages acknowledged and not yet done, just before a kill (0 if it does not answer)."""
    try:
        depth = httpx.get(f"{server.url}/v1/queues/work", timeout=2).json()["depth"]
    except httpx.HTTPError:
        return 0
    return int(depth["queued"] + depth["running"] + depth["retrying"])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_under_publishing_load_loses_nothing_acknowledged(
    server_factory: Callable[..., Server], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    recorded, acked_file, stop_file = (
        tmp_path / "recorded.txt",
        tmp_path / "acked.txt",
        tmp_path / "stop",
    )

    def config(concurrency: int, sleep_s: float) -> str:
        queue = (
            f'[queues.work]\nhandler = "tests.handlers:record"\nconcurrency = {concurrency}\n'
            # A death while running counts as a failure: leave room for a few in a row.
            "max_retries = 50\nretry_backoff_s = 0.05\nretry_backoff_max_s = 0.2\n"
            f'options = {{ path = "{recorded}", sleep_s = {sleep_s} }}\n'
        )
        return toml_config(tmp_path, queue, 'backend = "sqlite"')

    # Slower to consume than to publish: every kill finds a backlog to lose, if it can.
    server = server_factory(config(concurrency=2, sleep_s=0.01))
    server.start()
    backlog_at_kills = 0
    load_log = (tmp_path / "load.out").open("wb")
    load = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_load", server.url, str(acked_file), str(stop_file)],
        cwd=ROOT,
        stdout=load_log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _cycle in range(CYCLES):
            time.sleep(rng.uniform(0.2, 1.5))
            assert load.poll() is None, (tmp_path / "load.out").read_text()
            backlog_at_kills += backlog(server)
            server.kill()  # SIGKILL to the whole process group, mid-load
            server.start()
        stop_file.touch()
        assert load.wait(120) == 0, (tmp_path / "load.out").read_text()
        backlog_at_kills += backlog(server)
        server.kill()
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
        load_log.close()
    summary = json.loads((tmp_path / "load.out").read_text().splitlines()[-1])
    acked = set(lines(acked_file))
    server = server_factory(config(concurrency=8, sleep_s=0), port=server.port)
    server.start()  # the drain: same file, a faster consumer
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while not acked <= set(lines(recorded)) and time.monotonic() < deadline:
        time.sleep(0.2)
    stats = httpx.get(f"{server.url}/v1/queues/work", timeout=10).json()
    assert server.stop() == 0
    processed = Counter(lines(recorded))
    lost = acked - set(processed)
    unexpected = set(processed) - acked
    duplicated = sum(n - 1 for n in processed.values())
    with capsys.disabled():
        print(
            f"\ncrash test (seed {seed}): {CYCLES} kill -9 cycles, acknowledged={len(acked)} "
            f"waiting_at_kills(sum)={backlog_at_kills} "
            f"in_doubt={summary['in_doubt']} processed={len(processed)} lost={len(lost)} "
            f"duplicated={duplicated} unexpected={len(unexpected)}"
        )
    assert len(acked) >= 100, "the load did not get going"
    assert backlog_at_kills > 0, "no kill found a message waiting: nothing was at stake"
    assert not lost, f"acknowledged but never processed: {sorted(lost)[:10]}"
    assert not unexpected, f"processed but never acknowledged: {sorted(unexpected)[:10]}"
    assert stats["depth"]["dead"] == 0


@pytest.mark.slow
def test_a_message_that_kills_the_process_is_dead_lettered_after_its_retries(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    queue = '[queues.work]\nhandler = "tests.handlers:crash"\nmode = "thread"\nmax_retries = 1\n'
    server = server_factory(toml_config(tmp_path, queue, 'backend = "sqlite"'))
    server.start()
    r = httpx.post(f"{server.url}/v1/queues/work/messages", json={"body": 1}, timeout=10)
    assert r.status_code == 202
    mid = r.json()["id"]
    assert server.wait_exit(30) == 13  # attempt 1 takes the process down
    server.start(wait_ready=False)
    assert server.wait_exit(30) == 13  # recovered as queued (1 failure), attempt 2: down again
    server.start()  # 2 failures > max_retries: a dead letter, and the node stays up
    msg = httpx.get(f"{server.url}/v1/messages/{mid}", timeout=10).json()
    assert msg["status"] == "failed" and msg["attempts"] == 2
    assert msg["error"]["type"] == "ProcessDied"
    dead = httpx.get(f"{server.url}/v1/queues/work/dead", timeout=10).json()
    assert [m["id"] for m in dead["messages"]] == [mid]
    assert server.stop() == 0
