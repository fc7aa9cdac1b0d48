"""The scheduler: one task for every delay and backoff, with a manual clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from service import Settings
from service.broker.base import Failed
from service.broker.local import LocalBroker
from service.broker.policy import backoff
from service.config import QueueSettings, ResultsSettings
from service.model import Envelope, ErrorInfo, Status

from .conftest import client_for
from .contract.helpers import publish


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def envelope(body: bytes = b"1", **kw: object) -> Envelope:
    import msgspec

    return msgspec.convert({"body": msgspec.Raw(body), **kw}, Envelope)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def broker_with(clock: ManualClock, **queue: object) -> LocalBroker:
    qs = QueueSettings(handler="tests.handlers:echo", **queue)  # type: ignore[arg-type]
    return LocalBroker({"q": qs}, ResultsSettings(), clock=clock, rng=random.Random(7))


async def test_backoff_is_full_jitter_under_the_exponential_cap(clock: ManualClock) -> None:
    broker = broker_with(clock, retry_backoff_s=1.0, retry_backoff_max_s=5.0)
    qs = broker.queue("q").settings
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        samples = [backoff(qs, failures, broker._rng) for _ in range(500)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # jitter spans the range, not a constant


async def test_delays_release_in_due_order_by_the_clock(clock: ManualClock) -> None:
    broker = broker_with(clock)
    await broker.publish(
        "q",
        [envelope(b'"c"', delay_s=30), envelope(b'"a"', delay_s=10), envelope(b'"b"', delay_s=20)],
    )
    task = asyncio.create_task(broker.run())
    try:
        # One turn of the loop runs the scheduler's first pass (its task was queued first):
        # with the manual clock nothing is due, whatever the real time says.
        await asyncio.sleep(0)
        assert broker.cached_stats("q").depth["scheduled"] == 3
        clock.now += 25
        broker.wake()
        first = await asyncio.wait_for(broker.take("q"), 2)
        second = await asyncio.wait_for(broker.take("q"), 2)
        assert (first.body, second.body) == (b'"a"', b'"b"')
        assert broker.cached_stats("q").depth["scheduled"] == 1
    finally:
        task.cancel()


async def test_retry_waits_for_its_backoff_on_the_clock(clock: ManualClock) -> None:
    broker = broker_with(clock, retry_backoff_s=10, retry_backoff_max_s=10)
    task = asyncio.create_task(broker.run())
    try:
        await broker.publish("q", [envelope()])
        msg = await asyncio.wait_for(broker.take("q"), 2)
        finished = await broker.finish(msg, Failed(ErrorInfo("E", "boom")))
        assert finished.outcome == "retried"
        assert msg.status is Status.RETRYING
        assert msg.scheduled_for is not None
        assert msg.scheduled_for <= clock.now + 10
        clock.now += 10.001
        broker.wake()
        again = await asyncio.wait_for(broker.take("q"), 2)
        assert again is msg
        assert msg.attempts == 2
    finally:
        task.cancel()


async def test_delayed_messages_do_not_each_get_a_task(
    tmp_settings: Callable[..., Settings],
) -> None:
    settings = tmp_settings({"q": {"handler": "tests.handlers:echo"}})
    async with client_for(settings) as (client, _):
        before = len(asyncio.all_tasks())
        for _ in range(200):
            await publish(client, "q", 1, delay_s=60)
        assert len(asyncio.all_tasks()) <= before + 1


async def test_a_consumer_that_meets_an_expired_message_skips_it(clock: ManualClock) -> None:
    # No scheduler runs: the take alone must see the expiry (the sweep may not have yet).
    broker = broker_with(clock)
    (stale,), (fresh,) = [
        [p.message for p in await broker.publish("q", [envelope(b'"s"', expires_in_s=5)])],
        [p.message for p in await broker.publish("q", [envelope(b'"f"')])],
    ]
    clock.now += 5
    taken = await asyncio.wait_for(broker.take("q"), 2)
    assert taken is fresh
    assert (stale.status, stale.attempts, stale.finished_at) == (Status.EXPIRED, 0, clock.now)
    stats = broker.cached_stats("q")
    assert stats.counts.expired == 1
    assert stats.depth == {"scheduled": 0, "queued": 0, "running": 1, "retrying": 0, "dead": 0}
    assert (await broker.wait(stale.id, 0)) is stale


async def test_the_sweep_expires_waiting_work_so_depth_holds_none(clock: ManualClock) -> None:
    broker = broker_with(clock, retry_backoff_s=100, retry_backoff_max_s=100)
    await broker.publish(
        "q",
        [
            envelope(b'"queued"', expires_in_s=10),
            envelope(b'"scheduled"', delay_s=5, expires_in_s=10),
            envelope(b'"kept"', expires_in_s=30),
        ],
    )
    await broker.pause("q")
    task = asyncio.create_task(broker.run())
    try:
        await asyncio.sleep(0)
        assert broker.cached_stats("q").depth["queued"] == 2
        clock.now += 10
        broker.wake()
        deadline = asyncio.get_running_loop().time() + 5
        while broker.cached_stats("q").counts.expired < 2:
            assert asyncio.get_running_loop().time() < deadline, broker.cached_stats("q")
            await asyncio.sleep(0.01)
        depth = broker.cached_stats("q").depth
        assert (depth["queued"], depth["scheduled"]) == (1, 0)
    finally:
        task.cancel()


async def test_a_retry_due_after_the_expiry_expires_instead(clock: ManualClock) -> None:
    broker = broker_with(clock, retry_backoff_s=100, retry_backoff_max_s=100)
    task = asyncio.create_task(broker.run())
    try:
        await broker.publish("q", [envelope(expires_in_s=50)])
        msg = await asyncio.wait_for(broker.take("q"), 2)
        assert (await broker.finish(msg, Failed(ErrorInfo("E", "boom")))).outcome == "retried"
        clock.now += 200
        broker.wake()
        final = await broker.wait(msg.id, 5)
        assert final is msg and msg.status is Status.EXPIRED and msg.attempts == 1
        assert msg.error == ErrorInfo("E", "boom")
    finally:
        task.cancel()
