"""Per-queue rate limits (service/ratelimit.py): the token bucket, exactly, on a manual
clock; the rate's syntax; and the gate that holds a queue's consumers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.config import QueueSettings, load_settings
from service.errors import ConfigError
from service.handlers import RateLimited
from service.metrics import LightCounter
from service.openapi import openapi_document
from service.ratelimit import Rate, RateGate, TokenBucket, parse_rate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------- the rate's syntax
@pytest.mark.parametrize(
    ("text", "count", "window"),
    [("100/s", 100, 1), ("1/s", 1, 1), ("30/m", 30, 60), ("5/h", 5, 3600), ("1000000/s", 10**6, 1)],
)
def test_parse_rate_reads_count_and_window(text: str, count: int, window: int) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.window_s) == (count, window)
    assert rate.per_s == count / window


@pytest.mark.parametrize(
    "text", ["", "100", "100/d", "0/s", "-1/s", "1.5/s", "100 /s", "/s", "1000001/s", "10/S"]
)
def test_parse_rate_refuses_anything_else_saying_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"COUNT/s, COUNT/m or COUNT/h"):
        parse_rate(text)


def test_rate_policy_header_follows_the_ratelimit_headers_draft() -> None:
    assert Rate(100, 1).policy("emails") == '"emails";q=100;w=1'
    assert Rate(30, 60).policy("q") == '"q";q=30;w=60'


# ---------------------------------------------------------------------- the bucket
def test_bucket_admits_its_burst_at_once_then_one_token_per_interval() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    for _ in range(3):
        assert bucket.reserve() == 0.0
        bucket.use()
    assert bucket.reserve() == pytest.approx(0.1)
    clock.now = 0.1
    assert bucket.reserve() == 0.0


def test_a_held_token_counts_against_the_burst_until_released() -> None:
    # A consumer that holds a token while it waits for a message keeps the bucket from
    # filling past its burst: held + ready never exceeds it.
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    assert bucket.reserve() == 0.0  # held by an idle consumer
    clock.now = 100.0  # long idle: the bucket may refill only to burst - held
    assert bucket.reserve() == 0.0
    assert bucket.reserve() > 0
    bucket.release()
    assert bucket.reserve() == 0.0


def test_a_new_share_takes_effect_without_adding_tokens() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=10, clock=clock)
    bucket.set_rate(5, 5)  # a second node appeared
    for _ in range(5):
        assert bucket.reserve() == 0.0
        bucket.use()
    assert bucket.reserve() == pytest.approx(0.2)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "use", "release", "share"]),
        # Mostly no time at all between steps, sometimes a long idle: where bursts hide.
        st.one_of(st.just(0.0), st.sampled_from([0.001, 0.1, 10.0]), st.floats(0, 2.0)),
        st.integers(min_value=1, max_value=4),
    ),
    max_size=300,
)


@settings(max_examples=500, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    ops=OPS,
)
# An idle consumer's held token, then a long idle: the refill must stop at burst - held.
@example(
    rate=1.0, burst=1, ops=[("reserve", 0, 1), ("reserve", 10, 1), ("use", 0, 1), ("use", 0, 1)]
)
# The same, with the time spent full passing before the held token is used: it must not
# count as refill time once the token is spent.
@example(
    rate=1.0,
    burst=1,
    ops=[("reserve", 0, 1), ("reserve", 0, 1), ("use", 10, 1), ("reserve", 0, 1), ("use", 0, 1)],
)
def test_over_any_window_admitted_is_at_most_rate_times_window_plus_burst(
    rate: float, burst: int, ops: list[tuple[str, float, int]]
) -> None:
    clock = Clock()
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
    held = 0
    admitted: list[float] = []
    for op, advance, nodes in ops:
        clock.now += advance
        if op == "reserve":
            if bucket.reserve() == 0.0:
                held += 1
        elif op == "use" and held:
            held -= 1
            bucket.use()
            admitted.append(clock.now)
        elif op == "release" and held:
            held -= 1
            bucket.release()
        elif op == "share":
            # The node count changes: a smaller share never admits more than the whole.
            bucket.set_rate(rate / nodes, max(1.0, burst / nodes))
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            window = admitted[j] - start
            assert j - i + 1 <= rate * window + burst + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=1000), burst=st.integers(min_value=1, max_value=50))
def test_a_waiting_consumer_is_told_how_long_until_its_token(rate: float, burst: int) -> None:
    clock = Clock()
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
    for _ in range(burst):
        assert bucket.reserve() == 0.0
        bucket.use()
    wait = bucket.reserve()
    assert wait > 0
    clock.now += wait
    assert bucket.reserve() == 0.0


# ---------------------------------------------------------------------- the gate
async def test_gate_counts_each_throttled_wait_once() -> None:
    throttled = LightCounter()
    gate = RateGate(TokenBucket(rate=1000, burst=1), throttled)
    await gate.acquire()
    gate.use()
    assert throttled.value == 0
    await gate.acquire()  # the bucket is empty: this one waits (about a millisecond)
    gate.use()
    assert throttled.value == 1


async def test_gate_serves_waiting_consumers_one_at_a_time() -> None:
    gate = RateGate(TokenBucket(rate=2000, burst=1), LightCounter())
    order: list[int] = []

    async def consumer(n: int) -> None:
        await gate.acquire()
        order.append(n)
        gate.use()

    async with asyncio.TaskGroup() as tg:
        for n in range(5):
            tg.create_task(consumer(n))
    assert order == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------- config
def load_queue(tmp_path: Path, lines: str) -> QueueSettings:
    path = tmp_path / "config.toml"
    path.write_text(f'[queues.q]\nhandler = "tests.handlers:echo"\n{lines}')
    return load_settings(path, environ={}).queues["q"]


def test_rate_limit_and_burst_are_read_from_the_queue_table(tmp_path: Path) -> None:
    queue = load_queue(tmp_path, 'rate_limit = "30/m"\nrate_limit_burst = 5\n')
    assert (queue.rate_limit, queue.rate_limit_burst) == ("30/m", 5)
    assert load_queue(tmp_path, "").rate_limit is None


@pytest.mark.parametrize(
    ("lines", "key"),
    [
        ('rate_limit = "100/d"\n', "queues.q.rate_limit"),
        ('rate_limit = "0/s"\n', "queues.q.rate_limit"),
        ("rate_limit = 100\n", "queues.q.rate_limit"),
        ('rate_limit = "10/s"\nrate_limit_burst = 0\n', "queues.q.rate_limit_burst"),
        ('rate_limit = "10/s"\nrate_limit_burst = 1000001\n', "queues.q.rate_limit_burst"),
        ("rate_limit_burst = 5\n", "queues.q.rate_limit_burst"),
    ],
)
def test_a_bad_rate_limit_is_one_line_naming_the_key(tmp_path: Path, lines: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_queue(tmp_path, lines)
    detail = caught.value.detail
    assert detail.startswith(f"{key}: "), detail
    assert "\n" not in detail


def test_a_rate_limit_from_the_environment_is_checked_and_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[queues.q]\nhandler = "tests.handlers:echo"\n')
    variable = "SPOOL_QUEUES__Q__RATE_LIMIT"
    assert load_settings(path, environ={variable: "10/s"}).queues["q"].rate_limit == "10/s"
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={variable: "10/x"})
    assert caught.value.detail.startswith("queues.q.rate_limit: ")
    assert variable in caught.value.detail


# ---------------------------------------------------------------------- snoozes
@pytest.mark.parametrize("bad", ["5", None, True])
def test_rate_limited_takes_a_number_of_seconds_only(bad: object) -> None:
    with pytest.raises(TypeError, match="retry_after_s must be a number"):
        RateLimited(bad)  # type: ignore[arg-type]
    assert RateLimited(3).retry_after_s == 3.0


def test_openapi_documents_the_rate_limit_policy_header_of_both_publish_routes() -> None:
    paths = openapi_document()["paths"]
    for route, statuses in (
        ("/v1/queues/{queue}/messages", ("200", "202")),
        ("/v1/queues/{queue}/messages/batch", ("202",)),
    ):
        for status in statuses:
            assert "RateLimit-Policy" in paths[route]["post"]["responses"][status]["headers"]
