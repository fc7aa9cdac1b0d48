"""The broker's decisions, once for every backend: what an attempt's outcome makes of a
message, how long a retry waits, when a message is dead-lettered, which repeat of an
idempotency key answers with an earlier message, what may be cancelled, whether a batch
fits, how dead letters page, and what retention drops.

Functions of their arguments only: no asyncio, no I/O, no broker state. The only thing any
of them changes is the message (a transition's draft) handed in, so the local broker and
the amqp broker apply the same rule and differ only in how they store the result.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..config import QueueSettings
from ..errors import Conflict, QueueFull, UnknownQueue
from ..model import Envelope, Message, Status
from .base import PROCESS_DIED, Failed, Outcome, Published, Snoozed, Succeeded

# Looked up once: in Python 3.11 every `Status.X` is a descriptor call on the enum class,
# and record_outcome runs once per message.
_SUCCEEDED, _RETRYING, _FAILED = Status.SUCCEEDED, Status.RETRYING, Status.FAILED
_QUEUED, _RUNNING, _CANCELLED = Status.QUEUED, Status.RUNNING, Status.CANCELLED
_SCHEDULED = Status.SCHEDULED
# The longest a handler may snooze a message (RateLimited(retry_after_s) is cut to it).
MAX_SNOOZE_S = 86_400.0
_Q = TypeVar("_Q")


class Queues(dict[str, _Q]):
    """Queues by name, where looking up one that is not configured raises UnknownQueue
    (404) naming it. A dict, so the lookup every take and finish makes is one C step."""

    __slots__ = ()

    def __missing__(self, name: str) -> _Q:
        raise UnknownQueue(f"queue {name!r} is not configured")


# ---------------------------------------------------------------------- retries
@dataclass(frozen=True, slots=True)
class Retry:
    scheduled_for: float  # when the next attempt is due


@dataclass(frozen=True, slots=True)
class DeadLetter:
    pass


DEAD_LETTER = DeadLetter()


def backoff(settings: QueueSettings, failures: int, rng: random.Random) -> float:
    """Seconds before the next attempt after the `failures`-th failure: exponential backoff
    with full jitter (AWS's "full jitter"), uniform in [0, min(max, base * 2**(failures-1))].
    Jitter spreads the retries of a burst that failed together."""
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (failures - 1))
    return rng.uniform(0, ceiling)


def retries_left(settings: QueueSettings, failures: int) -> bool:
    """Whether a message that has failed `failures` times is tried again: max_retries
    retries, so max_retries + 1 attempts that fail, then a dead letter."""
    return failures <= settings.max_retries


def next_after_failure(
    settings: QueueSettings, failures: int, now: float, rng: random.Random
) -> Retry | DeadLetter:
    """`failures` counts the failure that just ended."""
    if retries_left(settings, failures):
        return Retry(now + backoff(settings, failures, rng))
    return DEAD_LETTER


# ---------------------------------------------------------------------- transitions
def start_attempt(msg: Message, now: float) -> None:
    """A consumer takes it: running, with the attempt counted before the handler starts."""
    msg.status = _RUNNING
    msg.attempts += 1
    msg.started_at = now
    msg.progress = None  # progress is the attempt's: a new one starts with none


def record_outcome(
    msg: Message, outcome: Outcome, settings: QueueSettings, now: float, rng: random.Random
) -> str:
    """An attempt ended: succeeded, retrying (with its backoff), failed (a dead letter) or
    snoozed. Returns the outcome's metric label: succeeded | retried | failed | snoozed."""
    if isinstance(outcome, Succeeded):
        msg.finished_at = now
        msg.status, msg.result, msg.error = _SUCCEEDED, outcome.result, None
        return "succeeded"
    if isinstance(outcome, Snoozed):
        snooze(msg, outcome.retry_after_s, now)
        return "snoozed"
    msg.finished_at = now
    assert isinstance(outcome, Failed)
    msg.error = outcome.error
    msg.failures += 1
    after = next_after_failure(settings, msg.failures, now, rng)
    if isinstance(after, Retry):
        msg.status, msg.scheduled_for = _RETRYING, after.scheduled_for
        return "retried"
    msg.status = _FAILED
    return "failed"


def snooze(msg: Message, retry_after_s: float, now: float) -> None:
    """The handler raised (or returned) RateLimited: scheduled again after retry_after_s
    (0 to MAX_SNOOZE_S), the attempt not counted and no failure, so a snooze can never push a
    message into the dead letters. Its error, if an earlier attempt left one, stays."""
    delay = min(retry_after_s if retry_after_s >= 0 else 0.0, MAX_SNOOZE_S)  # NaN: 0
    msg.status, msg.scheduled_for = _SCHEDULED, now + delay
    msg.attempts -= 1
    msg.snoozes += 1
    msg.started_at = None


def give_back(msg: Message) -> None:
    """An attempt cut short by a graceful stop: queued again, its attempt counted, no failure."""
    msg.status, msg.started_at = _QUEUED, None


def record_process_death(msg: Message, settings: QueueSettings, now: float) -> bool:
    """A message found `running` whose process died (a crash, kill -9, OOM): the attempt
    counts as failed, so a message that kills its process cannot loop forever. Returns True
    when that used up its retries: it is now a dead letter. Otherwise it runs again at once
    (no backoff: its status is left to the caller, which gives it back or delivers it)."""
    msg.failures += 1
    msg.error = PROCESS_DIED
    if retries_left(settings, msg.failures):
        return False
    msg.status, msg.finished_at = _FAILED, now
    return True


def check_cancellable(msg: Message) -> None:
    """Raises Conflict unless `msg` waits (scheduled, queued, retrying): running or final
    messages are not cancelled."""
    if not msg.status.cancellable:
        raise Conflict(f"message {msg.id!r} is {msg.status.value}; it cannot be cancelled")


def mark_cancelled(msg: Message, now: float) -> None:
    msg.status, msg.finished_at = _CANCELLED, now


def reset_for_redrive(msg: Message, now: float) -> None:
    """A dead letter redriven: attempts start again from 0 (SPEC), as if just published."""
    msg.attempts = msg.failures = 0
    msg.result = msg.error = msg.started_at = msg.finished_at = None
    msg.scheduled_for = None
    msg.status = _QUEUED
    msg.enqueued_at = now


# ---------------------------------------------------------------------- publishing
def check_room(
    queue: str,
    waiting: int,
    max_size: int,
    n: int,
    *,
    reserved: int = 0,
    dead_letters: bool = False,
) -> None:
    """Raises QueueFull (429, Retry-After 1) unless `n` more waiting messages fit under
    max_size: the whole batch or none of it. `reserved` is room already promised to changes
    still committing; `dead_letters` words the error for a redrive."""
    room = max_size - waiting - reserved
    if n <= room:
        return
    if dead_letters:
        detail = (
            f"queue {queue!r} has room for {max(0, room)} messages; {n} dead letters do not fit"
        )
    else:
        detail = (
            f"queue {queue!r} holds {waiting} of {max_size} waiting messages; {n} more do not fit"
        )
    raise QueueFull(detail, retry_after=1)


def resolve_keys(
    envelopes: Iterable[Envelope],
    lookup_existing: Callable[[str], Message | None],
    make_new: Callable[[Envelope], Message],
) -> list[Published]:
    """One Published per envelope, in order. An envelope whose idempotency key is already
    held (`lookup_existing`) or was used earlier in the same batch answers with that earlier
    message (created=False); every other envelope gets a new message (created=True)."""
    out: list[Published] = []
    seen: dict[str, Message] = {}
    for env in envelopes:
        key = env.idempotency_key
        if key is not None:
            earlier = seen.get(key) or lookup_existing(key)
            if earlier is not None:
                out.append(Published(earlier, created=False))
                continue
        msg = make_new(env)
        if key is not None:
            seen[key] = msg
        out.append(Published(msg, created=True))
    return out


# ---------------------------------------------------------------------- reading and retention
def dead_page(
    ids_newest_first: Sequence[str], limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    """One page of dead letters after `cursor` (the last id of the page before), and the
    cursor of the next page (None on the last). A cursor no longer among the dead letters
    (redriven or dropped since) ends the paging."""
    start = 0
    if cursor is not None:
        try:
            start = ids_newest_first.index(cursor) + 1
        except ValueError:
            start = len(ids_newest_first)
    page = list(ids_newest_first[start : start + limit])
    more = start + limit < len(ids_newest_first)
    return page, (page[-1] if more and page else None)


def expired(
    finals_oldest_first: Iterable[tuple[str, float | None]], cutoff: float, *, over: int = 0
) -> list[str]:
    """The final messages retention drops, given (id, finished_at) in the order they ended:
    the `over` oldest whatever their age (results.max_entries), then each further one that
    ended at or before `cutoff` (results.ttl_s), up to the first that ended later."""
    out: list[str] = []
    for n, (mid, finished_at) in enumerate(finals_oldest_first):
        if n >= over and (finished_at or 0.0) > cutoff:
            break
        out.append(mid)
    return out


def over_limit(ids_oldest_first: Collection[str], limit: int) -> list[str]:
    """The oldest ids past `limit` (results.max_entries for finals, and per queue for dead
    letters): what retention drops to get back to the limit."""
    return list(itertools.islice(ids_oldest_first, max(0, len(ids_oldest_first) - limit)))


def recovery_order(messages: Iterable[Message]) -> list[Message]:
    """The order a restart replays held messages in: the live ones first, then the finals by
    when they ended (retention and dead-letter order), and what was running last, as its
    outcome (a retry or a dead letter) is decided then."""
    return sorted(messages, key=lambda m: (m.status is _RUNNING, m.finished_at or 0.0, m.id))
