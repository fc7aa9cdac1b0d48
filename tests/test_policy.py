"""The broker's decisions (service/broker/policy.py), shared by every backend: unit tests
for each rule and property tests of the invariants the contract suite relies on."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.broker import policy
from service.broker.base import PROCESS_DIED, Failed, Snoozed, Succeeded
from service.config import QueueSettings
from service.errors import Conflict, QueueFull, UnknownQueue
from service.model import Envelope, ErrorInfo, Message, Status, new_message

BOOM = ErrorInfo("ValueError", "boom")


def queue_settings(**kw: object) -> QueueSettings:
    return QueueSettings(handler="tests.handlers:echo", **kw)  # type: ignore[arg-type]


def message(status: Status = Status.QUEUED, **kw: object) -> Message:
    fields: dict[str, object] = {
        "id": "m1",
        "queue": "q",
        "status": status,
        "body": b"1",
        "headers": {},
        "priority": 0,
        "created_at": 0.0,
        **kw,
    }
    return Message(**fields)  # type: ignore[arg-type]


def envelope(key: str | None = None) -> Envelope:
    return msgspec.convert({"body": msgspec.Raw(b"1"), "idempotency_key": key}, Envelope)


# ---------------------------------------------------------------------- backoff and retries
@settings(max_examples=300, deadline=None)
@given(
    base=st.floats(min_value=0, max_value=86400),
    cap=st.floats(min_value=0, max_value=86400),
    failures=st.integers(min_value=1, max_value=101),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_stays_within_zero_and_the_capped_exponential(
    base: float, cap: float, failures: int, seed: int
) -> None:
    qs = queue_settings(retry_backoff_s=base, retry_backoff_max_s=cap)
    delay = policy.backoff(qs, failures, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2 ** (failures - 1))


def test_backoff_is_jittered_across_the_whole_range() -> None:
    qs = queue_settings(retry_backoff_s=1.0, retry_backoff_max_s=5.0)
    rng = random.Random(3)
    samples = [policy.backoff(qs, 3, rng) for _ in range(500)]
    assert min(samples) < 4.0 * 0.2 and max(samples) > 4.0 * 0.8  # not a constant


@settings(max_examples=200, deadline=None)
@given(max_retries=st.integers(min_value=0, max_value=100), seed=st.integers(0, 2**32))
def test_a_message_that_always_fails_is_retried_exactly_max_retries_times(
    max_retries: int, seed: int
) -> None:
    qs = queue_settings(max_retries=max_retries, retry_backoff_s=1.0, retry_backoff_max_s=60.0)
    rng, msg, labels = random.Random(seed), message(), []
    while msg.status is not Status.FAILED:
        policy.start_attempt(msg, 10.0)
        labels.append(policy.record_outcome(msg, Failed(BOOM), qs, 10.0, rng))
        if msg.status is Status.RETRYING:
            assert msg.scheduled_for is not None and 10.0 <= msg.scheduled_for <= 70.0
            msg.status = Status.QUEUED  # the scheduler releases it
    assert labels == ["retried"] * max_retries + ["failed"]
    assert msg.attempts == msg.failures == max_retries + 1
    assert msg.error == BOOM and msg.finished_at == 10.0


def test_next_after_failure_retries_until_max_retries_then_dead_letters() -> None:
    qs = queue_settings(max_retries=2, retry_backoff_s=0.0)
    rng = random.Random(1)
    assert policy.next_after_failure(qs, 1, 5.0, rng) == policy.Retry(5.0)
    assert policy.next_after_failure(qs, 2, 5.0, rng) == policy.Retry(5.0)
    assert policy.next_after_failure(qs, 3, 5.0, rng) is policy.DEAD_LETTER


def test_a_success_clears_the_error_of_an_earlier_attempt() -> None:
    msg = message(Status.RUNNING, error=BOOM, failures=1)
    label = policy.record_outcome(msg, Succeeded(b'"ok"'), queue_settings(), 9.0, random.Random())
    assert label == "succeeded"
    assert (msg.status, msg.result, msg.error, msg.finished_at) == (
        Status.SUCCEEDED,
        b'"ok"',
        None,
        9.0,
    )
    assert msg.failures == 1  # the failures it had stay counted


@pytest.mark.parametrize(("max_retries", "deaths_to_dead"), [(0, 1), (1, 2), (3, 4)])
def test_process_death_counts_as_a_failure_and_dead_letters_past_max_retries(
    max_retries: int, deaths_to_dead: int
) -> None:
    qs = queue_settings(max_retries=max_retries)
    msg = message(Status.RUNNING)
    for death in range(1, deaths_to_dead + 1):
        dead = policy.record_process_death(msg, qs, 7.0)
        assert msg.error is PROCESS_DIED and msg.failures == death
        assert dead is (death == deaths_to_dead)
    assert msg.status is Status.FAILED and msg.finished_at == 7.0


def test_give_back_requeues_without_a_failure() -> None:
    msg = message(Status.RUNNING, attempts=1, started_at=3.0)
    policy.give_back(msg)
    assert (msg.status, msg.started_at, msg.attempts, msg.failures) == (Status.QUEUED, None, 1, 0)


# ---------------------------------------------------------------------- cancel and redrive
@pytest.mark.parametrize("status", list(Status))
def test_only_waiting_messages_are_cancellable(status: Status) -> None:
    msg = message(status)
    if status in (Status.SCHEDULED, Status.QUEUED, Status.RETRYING):
        policy.check_cancellable(msg)
        policy.mark_cancelled(msg, 4.0)
        assert (msg.status, msg.finished_at) == (Status.CANCELLED, 4.0)
    else:
        with pytest.raises(Conflict, match=f"is {status.value}; it cannot be cancelled"):
            policy.check_cancellable(msg)


def test_redrive_starts_the_attempts_again_from_zero() -> None:
    msg = message(
        Status.FAILED, attempts=4, failures=4, error=BOOM, started_at=1.0, finished_at=2.0
    )
    msg.scheduled_for = 1.5
    policy.reset_for_redrive(msg, 8.0)
    msg = unnarrowed(msg)  # mypy would keep the types it narrowed before the reset
    assert (msg.status, msg.attempts, msg.failures, msg.error) == (Status.QUEUED, 0, 0, None)
    assert msg.started_at is None and msg.finished_at is None and msg.scheduled_for is None
    assert msg.enqueued_at == 8.0


# ---------------------------------------------------------------------- room
@given(
    waiting=st.integers(0, 100),
    reserved=st.integers(0, 20),
    max_size=st.integers(1, 100),
    n=st.integers(0, 150),
)
def test_check_room_refuses_exactly_the_batches_that_do_not_fit(
    waiting: int, reserved: int, max_size: int, n: int
) -> None:
    if waiting + reserved + n <= max_size:
        policy.check_room("q", waiting, max_size, n, reserved=reserved)
    else:
        with pytest.raises(QueueFull, match=f"; {n} more do not fit") as refused:
            policy.check_room("q", waiting, max_size, n, reserved=reserved)
        assert refused.value.retry_after == 1


def test_check_room_names_dead_letters_for_a_redrive() -> None:
    with pytest.raises(QueueFull, match="has room for 2 messages; 3 dead letters do not fit"):
        policy.check_room("q", 8, 10, 3, dead_letters=True)
    with pytest.raises(QueueFull, match="has room for 0 messages"):
        policy.check_room("q", 12, 10, 1, dead_letters=True)  # over (max_size lowered): 0


# ---------------------------------------------------------------------- idempotency keys
@given(keys=st.lists(st.one_of(st.none(), st.sampled_from("abcde")), max_size=30))
def test_every_repeat_of_a_key_answers_with_its_first_message(keys: list[str | None]) -> None:
    held = {"e": new_message("q", envelope("e"), 0.0)}  # already held before this batch
    made: list[Envelope] = []

    def make(env: Envelope) -> Message:
        made.append(env)
        return new_message("q", env, 1.0)

    out = policy.resolve_keys([envelope(k) for k in keys], held.get, make)
    assert len(out) == len(keys)
    first: dict[str, Message] = dict(held)
    for key, published in zip(keys, out, strict=True):
        if key is None:
            assert published.created
        elif key in first:
            assert not published.created and published.message is first[key]
        else:
            assert published.created and published.message.idempotency_key == key
            first[key] = published.message
    assert len(made) == sum(p.created for p in out)  # a repeat builds no message


# ---------------------------------------------------------------------- dead-letter paging
@given(count=st.integers(0, 60), limit=st.integers(1, 25))
def test_dead_paging_visits_every_id_once_in_order(count: int, limit: int) -> None:
    ids = [f"m{i:03}" for i in range(count)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(count + 2):
        page, cursor = policy.dead_page(ids, limit, cursor)
        assert len(page) <= limit
        seen += page
        if cursor is None:
            break
    assert cursor is None and seen == ids


def test_a_cursor_that_left_the_dead_letters_ends_the_paging() -> None:
    assert policy.dead_page(["a", "b"], 10, "gone") == ([], None)
    assert policy.dead_page(["a", "b", "c"], 2, None) == (["a", "b"], "b")
    assert policy.dead_page(["a", "b", "c"], 2, "b") == (["c"], None)


# ---------------------------------------------------------------------- retention
@given(
    ends=st.lists(st.floats(0, 100), max_size=40).map(sorted),
    cutoff=st.floats(0, 100),
    over=st.integers(0, 45),
)
def test_retention_drops_the_oldest_over_the_limit_and_every_expired_prefix(
    ends: list[float], cutoff: float, over: int
) -> None:
    finals = [(f"m{i:03}", end) for i, end in enumerate(ends)]
    dropped = policy.expired(finals, cutoff, over=over)
    assert dropped == [mid for mid, _ in finals[: len(dropped)]]  # always the oldest
    expected = max(min(over, len(finals)), sum(end <= cutoff for end in ends))
    assert len(dropped) == expected


def test_over_limit_takes_the_oldest_past_the_limit() -> None:
    assert policy.over_limit({"a": None, "b": None, "c": None}, 1) == ["a", "b"]
    assert policy.over_limit(["a"], 5) == []


def test_recovery_replays_live_then_finals_by_end_then_what_was_running() -> None:
    running = message(Status.RUNNING, id="a")
    late = message(Status.SUCCEEDED, id="b", finished_at=9.0)
    early = message(Status.FAILED, id="c", finished_at=2.0)
    queued = message(Status.QUEUED, id="d")
    order = policy.recovery_order([running, late, early, queued])
    assert [m.id for m in order] == ["d", "c", "b", "a"]


def test_an_unknown_queue_is_named_in_its_error() -> None:
    queues = policy.Queues({"q": 1})
    assert queues["q"] == 1 and queues.get("nope") is None
    with pytest.raises(UnknownQueue, match="queue 'nope' is not configured"):
        queues["nope"]


def unnarrowed(msg: Message) -> Message:
    return msg


# ---------------------------------------------------------------------- snoozes
def test_a_snooze_schedules_the_message_again_without_counting_the_attempt() -> None:
    msg = message(error=BOOM, failures=1)
    policy.start_attempt(msg, 10.0)
    assert msg.attempts == 1
    label = policy.record_outcome(msg, Snoozed(2.5), queue_settings(), 11.0, random.Random())
    assert label == "snoozed"
    assert (msg.status, msg.scheduled_for, msg.attempts, msg.failures) == (
        Status.SCHEDULED,
        13.5,
        0,
        1,
    )
    assert (msg.started_at, msg.finished_at, msg.error) == (None, None, BOOM)
    assert msg.snoozes == 1


@pytest.mark.parametrize(
    ("asked", "waits"), [(-1.0, 0.0), (float("nan"), 0.0), (float("inf"), policy.MAX_SNOOZE_S)]
)
def test_a_snooze_waits_between_zero_and_the_longest_snooze(asked: float, waits: float) -> None:
    msg = message()
    policy.start_attempt(msg, 0.0)
    policy.record_outcome(msg, Snoozed(asked), queue_settings(), 5.0, random.Random())
    assert msg.scheduled_for == 5.0 + waits


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(["snooze", "fail"]), max_size=60),
    max_retries=st.integers(min_value=0, max_value=10),
)
def test_snoozes_never_count_as_attempts_or_failures(outcomes: list[str], max_retries: int) -> None:
    # Whatever mix of snoozes and failures: attempts count the failed attempts only, and
    # attempts + snoozes (amqp's event version) grows at every start.
    qs = queue_settings(max_retries=max_retries, retry_backoff_s=0.0)
    rng, msg = random.Random(0), message()
    turns = 0
    for what in outcomes:
        if msg.status is Status.FAILED:
            break
        policy.start_attempt(msg, 1.0)
        assert msg.attempts + msg.snoozes > turns
        turns = msg.attempts + msg.snoozes
        outcome = Snoozed(1.0) if what == "snooze" else Failed(BOOM)
        label = policy.record_outcome(msg, outcome, qs, 1.0, rng)
        if label != "failed":
            msg.status = Status.QUEUED  # the scheduler releases it
    assert msg.attempts == msg.failures
