"""Per-queue rate limits: `rate_limit = "100/s"` holds a queue's consumers to a token bucket.

A consumer takes a token before it takes a message, so a throttled queue leaves its
messages queued (not `running`, no attempt counted) while it waits. A token a consumer
holds while it waits for a message still counts against the burst: the bucket refills only
up to `burst - held`, so over any window the messages started are at most
rate * window + burst, however long the queue sat idle (tests/test_ratelimit.py proves it
on a manual clock).

On the amqp backend the nodes share the limit: each takes rate / N, where N is the count of
live nodes that the events stream shows (README, Rate limits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .config_values import Rate, parse_rate

if TYPE_CHECKING:
    from .metrics import LightCounter

__all__ = ["Rate", "RateGate", "TokenBucket", "parse_rate"]

# A wait shorter than this is rounded up: the loop cannot sleep less, and a hot loop of
# zero-length sleeps would starve everything else.
MIN_WAIT_S = 0.0005
# A token that refilled for exactly the wait reserve() named may fall short of 1 by a
# rounding error: counted as whole (the bound it loosens is a billionth of a message).
FULL_TOKEN_SLACK = 1e-9


class TokenBucket:
    """A token bucket that knows how many of its tokens are held (taken by a consumer that
    has not yet used or given it back). Pure: no asyncio, its clock injected."""

    __slots__ = ("_burst", "_clock", "_held", "_last", "_rate", "_tokens")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._held = 0
        self._last = clock()

    def set_rate(self, rate: float, burst: float) -> None:
        """A new share of the limit (amqp: the live node count changed). Tokens never grow
        by it: a smaller burst cuts what is ready."""
        self._refill()
        self._rate, self._burst = rate, burst
        self._tokens = min(self._tokens, max(0.0, burst - self._held))

    def reserve(self) -> float:
        """0.0: a token is now held by the caller (who must use() or release() it); else the
        seconds until one may be ready."""
        self._refill()
        if self._tokens >= 1 - FULL_TOKEN_SLACK:
            self._tokens -= 1
            self._held += 1
            return 0.0
        return max(MIN_WAIT_S, (1 - self._tokens) / self._rate)

    def use(self) -> None:
        """The held token started a message: spent. The time until now refills under the
        room there was until now (held tokens included), not under the room this frees."""
        self._refill()
        self._held -= 1

    def release(self) -> None:
        """The held token started nothing (its consumer stopped): back in the bucket."""
        self._refill()
        self._held -= 1
        self._tokens = min(self._tokens + 1, max(0.0, self._burst - self._held))

    def _refill(self) -> None:
        now = self._clock()
        room = self._burst - self._held
        if self._tokens < room:
            self._tokens = min(room, self._tokens + (now - self._last) * self._rate)
        self._last = now


class RateGate:
    """What a queue's consumers wait at: one bucket, waited on one consumer at a time (first
    come, first served; the others wait on the lock, not on timers of their own)."""

    __slots__ = ("_bucket", "_lock", "_share", "_shared_by", "_throttled", "burst", "rate")

    def __init__(
        self,
        bucket: TokenBucket,
        throttled: LightCounter,
        *,
        rate: float = 0.0,
        burst: float = 0.0,
        shared_by: Callable[[], int] | None = None,
    ) -> None:
        self._bucket = bucket
        self._throttled = throttled
        self._lock = asyncio.Lock()
        self.rate, self.burst = rate, burst
        self._shared_by = shared_by
        self._share = 1

    async def acquire(self) -> None:
        """Returns holding a token: use() it when a message starts, release() it otherwise."""
        if not self._lock.locked():
            # Nobody waits before us: a ready token is taken without the lock's frame
            # (the usual case of a limit far above the load; bench B11).
            self._follow_share()
            if not self._bucket.reserve():
                return
        async with self._lock:
            self._follow_share()
            wait = self._bucket.reserve()
            if wait:
                self._throttled.inc()
                while wait:
                    await asyncio.sleep(wait)
                    self._follow_share()
                    wait = self._bucket.reserve()

    def use(self) -> None:
        self._bucket.use()

    def release(self) -> None:
        self._bucket.release()

    def _follow_share(self) -> None:
        if self._shared_by is None:
            return
        nodes = max(1, self._shared_by())
        if nodes != self._share:
            self._share = nodes
            self._bucket.set_rate(self.rate / nodes, max(1.0, self.burst / nodes))
