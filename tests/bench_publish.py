"""Publish throughput, memory vs sqlite, in one run: python -m tests.bench_publish.

Each backend runs as `python -m service` on a free port with its queue paused (publishing
only is measured). Two loads, each for --seconds: single POSTs from --clients concurrent
clients, then batches of --batch messages from 4 concurrent clients. The client is Python
(httpx) on the same machine, so absolute figures are a floor; the ratio is the point.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .conftest import Server, free_port, toml_config

BODY = {"order": 12345, "items": ["a", "b", "c"], "note": "x" * 200}


async def load(url: str, clients: int, seconds: float, batch: int) -> tuple[float, float, float]:
    """(messages per second, p50 ms, p99 ms) of 202s over `seconds`."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    path = "/v1/queues/bench/messages" + ("/batch" if batch else "")
    payload = {"messages": [{"body": BODY}] * batch} if batch else {"body": BODY}
    per_request = batch or 1

    async def one(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            response = await client.post(path, json=payload)
            if response.status_code != 202:
                raise RuntimeError(f"{response.status_code}: {response.text}")
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        began = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    quantiles = statistics.quantiles(latencies, n=100)
    return len(latencies) * per_request / elapsed, quantiles[49] * 1000, quantiles[98] * 1000


def run(backend: str, args: argparse.Namespace, tmp: Path) -> list[str]:
    queue = '[queues.bench]\nhandler = "service.handlers:echo"\nmax_size = 10000000\n'
    extra = f'backend = "{backend}"\nsqlite_synchronous = "{args.synchronous}"'
    config = tmp / f"{backend}.toml"
    config.write_text(toml_config(tmp / backend, queue, extra) + "\n[log]\nlevel = 'warning'\n")
    (tmp / backend).mkdir()
    port = free_port()
    env = {"SPOOL_SERVER__BIND": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    server = Server(config, port, tmp / f"{backend}.log", {**_base_env(), **env})
    server.start()
    try:
        httpx.post(f"{server.url}/v1/queues/bench/pause", timeout=10).raise_for_status()
        single = asyncio.run(load(server.url, args.clients, args.seconds, 0))
        batched = asyncio.run(load(server.url, 4, args.seconds, args.batch))
    finally:
        server.kill()
    return [
        f"| {backend} | single POST, {args.clients} clients | {single[0]:,.0f} | "
        f"{single[1]:.1f} | {single[2]:.1f} |",
        f"| {backend} | batch of {args.batch}, 4 clients | {batched[0]:,.0f} | "
        f"{batched[1]:.1f} | {batched[2]:.1f} |",
    ]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    rows = ["| backend | load | messages/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("memory", "sqlite"):
            rows += run(backend, args, Path(tmp))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
