"""Names and arguments of everything Spool declares on RabbitMQ, and the delay ladder.

Per Spool queue Q:
- `spool.Q`        the work queue: durable, `x-max-length = max_size` with
                   `x-overflow = reject-publish` (a full queue nacks the publish: 429),
                   `x-max-priority = 9`.
- `spool.Q.due`    where delayed and retried messages land when their wait is over. It has no
                   length cap, so a wait that ends while the work queue is full loses nothing.
- `spool.Q.wait.N` the delay ladder: queue N holds messages for 2**N * 100 ms
                   (`x-message-ttl`), then dead-letters them into `spool.Q.due`. A delay is
                   taken as hops down the ladder, largest first; every message in one wait
                   queue has the same TTL, so they expire in order (no head-of-line blocking)
                   on a stock RabbitMQ, with no plugin.
- `spool.Q.dead`   dead letters (bounded by results.max_entries, oldest dropped first).
- `spool.Q.state`  the last pause/resume of the queue (`x-max-length = 1`).
One stream, `spool.events`, carries every status change for all nodes to materialise.
"""

from __future__ import annotations

from typing import Any

PREFIX = "spool."
EVENTS = "spool.events"
MAX_PRIORITY = 9
LADDER_BASE_MS = 100
LADDER_STEPS = 29  # 100 ms * 2**28 ≈ 310 days: with every rung below it, > 366 days in all
# A message this close to its due time runs now rather than taking another hop.
DUE_SLACK_S = 0.05


def work(queue: str) -> str:
    return f"{PREFIX}{queue}"


def due(queue: str) -> str:
    return f"{PREFIX}{queue}.due"


def dead(queue: str) -> str:
    return f"{PREFIX}{queue}.dead"


def state(queue: str) -> str:
    return f"{PREFIX}{queue}.state"


def wait(queue: str, step: int) -> str:
    return f"{PREFIX}{queue}.wait.{step}"


def step_ms(step: int) -> int:
    return int(LADDER_BASE_MS * 2**step)


def next_step(remaining_s: float) -> int:
    """The largest rung that does not overshoot `remaining_s` (the smallest one at least)."""
    remaining_ms = remaining_s * 1000
    step = 0
    while step + 1 < LADDER_STEPS and step_ms(step + 1) <= remaining_ms:
        step += 1
    return step


def work_args(max_size: int) -> dict[str, Any]:
    return {
        "x-max-length": max_size,
        "x-overflow": "reject-publish",
        "x-max-priority": MAX_PRIORITY,
    }


def due_args() -> dict[str, Any]:
    return {"x-max-priority": MAX_PRIORITY}


def wait_args(queue: str, step: int) -> dict[str, Any]:
    return {
        "x-message-ttl": step_ms(step),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": due(queue),
    }


def dead_args(max_entries: int) -> dict[str, Any]:
    return {"x-max-length": max_entries}


def state_args() -> dict[str, Any]:
    return {"x-max-length": 1}


def events_args(ttl_s: float, max_entries: int) -> dict[str, Any]:
    # Retention works per segment: small segments let old events go close to ttl_s. The
    # size cap (about four events of 1 KiB per retained result) bounds the disk it takes.
    return {
        "x-queue-type": "stream",
        "x-max-age": f"{max(1, round(ttl_s))}s",
        "x-max-length-bytes": max(64 * 2**20, max_entries * 4096),
        "x-stream-max-segment-size-bytes": 8_000_000,
    }
