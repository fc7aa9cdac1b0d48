"""Handlers the benchmarks run: fixed amounts of pure-Python work, so a faster machine or a
loaded one changes every side of a ratio alike."""

from __future__ import annotations

from typing import Any

from service.handlers.builtin import checksum

# About 20 µs of pure-Python work on the reference machine (22 ns per iteration).
SPIN_ITERATIONS = 900
# checksum rounds for about 50 ms of GIL-holding work (0.23 µs a round).
CPU_ROUNDS = 200_000


def spin(n: int = SPIN_ITERATIONS) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def small(body: Any) -> int:
    """The ~20 µs handler of B3/B4 (thread mode)."""
    return spin()


async def async_noop(body: Any) -> Any:
    """A handler that costs nearly nothing, so a drain after a publish benchmark is quick."""
    return None


async def on_loop_cpu(body: Any) -> Any:
    """Negative control of B5: CPU-bound work run on the event loop itself (never do this)."""
    return checksum(body)
