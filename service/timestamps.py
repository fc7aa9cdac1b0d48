"""Times as the API writes them: RFC 3339 UTC with milliseconds and a Z, fast, since every
message answer writes four of them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import overload


@overload
def rfc3339(ts: float) -> str: ...


@overload
def rfc3339(ts: float | None) -> str | None: ...


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _rfc3339(ts)


def _rfc3339(ts: float) -> str:
    """What datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds") writes (with
    Z), in under half the time: the date and time to the second come from a small cache,
    since they change once a second, and only the milliseconds are new. The microseconds
    are rounded half to even first, as datetime does."""
    global _last_written
    last = _last_written
    if last[0] == ts:
        return last[1]  # a batch's messages share their created_at: written once for all
    if ts < 0:
        return _slow_rfc3339(ts)
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    text = f"{_to_the_second(second)}.{micros // 1000:03d}Z"
    _last_written = (ts, text)  # one tuple: threads read it whole
    return text


# Module-level, like _to_the_second's cache: memos of pure functions of the time alone, so
# apps side by side share them without leaking anything between them (the census in
# tests/test_field_order.py lists each; test_hot_path.py checks them against datetime).
_last_written: tuple[float, str] = (math.nan, "")  # NaN equals nothing


@lru_cache(maxsize=256)
def _to_the_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _slow_rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
