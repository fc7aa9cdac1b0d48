"""Publishing load for the crash test, run as its own process: python -m tests.crash_load.

Concurrent clients publish (singles and small batches) to URL/v1/queues/work/messages, each
message with a unique idempotency key. A publish that gets no answer (the server was killed
under it) is retried with the same key until one comes, as a careful client does: so every
message the server committed ends up acknowledged, by its 202 or by the retry's 200.
Runs until STOP_FILE exists, then writes every acknowledged id to ACKED_FILE, one a line,
and a JSON summary to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ANSWER_DEADLINE_S = 90.0  # one publish may wait this long for a restarted server
BATCH_EVERY = 8  # every 8th publish is a batch…
BATCH_SIZE = 5  # …of this many messages


class Load:
    def __init__(self, url: str, stop_file: Path, run: str) -> None:
        self.url = url.rstrip("/") + "/v1/queues/work/messages"
        self.stop_file = stop_file
        self.run = run
        self.acked: list[str] = []
        self.in_doubt = 0  # publishes whose first try got no answer
        self.refused = 0  # 429/503 answers
        self._seq = itertools.count()

    def stopped(self) -> bool:
        return self.stop_file.exists()

    async def client(self, client: httpx.AsyncClient, number: int) -> None:
        while not self.stopped():
            seq = next(self._seq)
            if seq % BATCH_EVERY == 0:
                envelopes = [self._envelope(number, seq, i) for i in range(BATCH_SIZE)]
                doc = await self.publish(client, self.url + "/batch", {"messages": envelopes})
                self.acked.extend(m["id"] for m in doc["messages"])
            else:
                doc = await self.publish(client, self.url, self._envelope(number, seq, 0))
                self.acked.append(doc["id"])

    def _envelope(self, number: int, seq: int, index: int) -> dict[str, Any]:
        key = f"{self.run}-{number}-{seq}-{index}"
        return {"body": {"key": key}, "idempotency_key": key}

    async def publish(
        self, client: httpx.AsyncClient, url: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        first = True
        while True:
            try:
                response = await client.post(url, json=payload)
            except httpx.HTTPError:
                if first:
                    self.in_doubt += 1
                    first = False
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            if response.status_code in (200, 202):
                doc: dict[str, Any] = response.json()
                return doc
            if response.status_code in (429, 503) and time.monotonic() < deadline:
                self.refused += 1
                await asyncio.sleep(0.1)
                continue
            raise RuntimeError(f"publish answered {response.status_code}: {response.text}")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("acked_file", type=Path)
    parser.add_argument("stop_file", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    load = Load(args.url, args.stop_file, run=str(time.time_ns()))
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(timeout=5.0, limits=limits) as client:
        await asyncio.gather(*(load.client(client, n) for n in range(args.clients)))
    args.acked_file.write_text("".join(f"{mid}\n" for mid in load.acked))
    summary = {"acknowledged": len(set(load.acked)), "in_doubt": load.in_doubt}
    print(json.dumps({**summary, "refused": load.refused}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
