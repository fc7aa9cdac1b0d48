"""A publish answers each new message as accepted (api/answers.py), and the spliced answer
of the usual batch is byte for byte what msgspec writes for the same views."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import Settings
from service.api.answers import _alike, accepted_view, batch_answer
from service.model import Envelope, Message, MessageView, Status, new_message

from .conftest import running

encode = msgspec.json.Encoder().encode

bodies = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),  # quotes, backslashes, marks-like text, any code point
        st.sampled_from(['"\\u0000body"', "\x00id", "\\u0000id", ",", '"']),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)


def envelope(body: Any, **options: Any) -> Envelope:
    return msgspec.json.decode(encode({"body": body, **options}), type=Envelope)


def generic(new: list[Message]) -> bytes:
    return encode({"messages": [accepted_view(m) for m in new]})


@settings(max_examples=300, deadline=None)
@given(st.lists(bodies, min_size=1, max_size=20), st.integers(0, 9), st.sampled_from(["q", "ü-q"]))
def test_the_spliced_answer_is_what_msgspec_writes(
    docs: list[Any], priority: int, queue: str
) -> None:
    envelopes = [envelope(doc, priority=priority) for doc in docs]
    new = [new_message(queue, env, 1_790_000_000.123456) for env in envelopes]
    assert _alike(envelopes, new)
    answer = batch_answer(envelopes, new)
    assert answer == generic(new)
    assert [m["body"] for m in json.loads(answer)["messages"]] == [
        json.loads(encode(d)) for d in docs
    ]


def test_batches_that_differ_by_more_than_id_and_body_take_the_views() -> None:
    at = 1_790_000_000.5
    cases = [
        [envelope(1), envelope(2, delay_s=5)],
        [envelope(1), envelope(2, headers={"k": "v"})],
        [envelope(1), envelope(2, idempotency_key="k")],
        [envelope(1), envelope(2, priority=3)],
    ]
    for envelopes in cases:
        new = [new_message("q", env, at) for env in envelopes]
        assert not _alike(envelopes, new)
        assert batch_answer(envelopes, new) == generic(new)
    # One created_at per publish is every broker's way (checked below); the ends confirm it.
    envelopes = [envelope(1), envelope(2)]
    new = [new_message("q", env, at + i) for i, env in enumerate(envelopes)]
    assert not _alike(envelopes, new)
    times = [m["created_at"] for m in json.loads(batch_answer(envelopes, new))["messages"]]
    assert times == ["2026-09-21T14:13:20.500Z", "2026-09-21T14:13:21.500Z"]


def test_a_new_message_is_answered_as_accepted_whatever_happened_since() -> None:
    at = 1_790_000_000.0
    envelopes = [envelope({"n": 1}), envelope({"n": 2})]
    new = [new_message("q", env, at) for env in envelopes]
    taken = new[0]
    # A consumer took it before the answer was written (sqlite and amqp can yield there).
    taken.status, taken.attempts, taken.started_at = Status.RUNNING, 1, at + 0.1
    messages = json.loads(batch_answer(envelopes, new))["messages"]
    assert [(m["status"], m["attempts"], m["started_at"]) for m in messages] == [
        ("queued", 0, None),
        ("queued", 0, None),
    ]
    delayed = new_message("q", envelope(1, delay_s=2), at)
    delayed.status = Status.QUEUED  # released by the scheduler meanwhile
    view = accepted_view(delayed)
    assert (view.status, view.scheduled_for) == (Status.SCHEDULED, "2026-09-21T14:13:22.000Z")


def test_an_unchanged_message_looks_the_same_accepted_or_viewed() -> None:
    for env in (envelope([1, "x"], priority=4, headers={"a": "b"}), envelope(None, delay_s=1.5)):
        msg = new_message("q", env, 1_790_000_000.25)
        assert encode(accepted_view(msg)) == encode(msg.view())
        assert isinstance(accepted_view(msg), MessageView)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_publish_gives_its_messages_one_created_at(
    tmp_settings: Callable[..., Settings], backend: str
) -> None:
    settings = tmp_settings({"q": {"handler": "tests.handlers:echo"}}, broker={"backend": backend})
    async with running(settings) as rt:
        await rt.broker.pause("q")
        envelopes = [envelope(i, delay_s=i % 2, priority=i % 3) for i in range(50)]
        published = await rt.broker.publish("q", envelopes)
        assert len({p.message.created_at for p in published}) == 1


def test_a_batch_whose_messages_differ_in_created_at_shows_each_ones_own() -> None:
    """The spliced answer writes one created_at for all: it is taken only when every message
    has it, not just the first and the last (a broker that stamped each message would
    otherwise be answered with the first one's time for the ones between)."""
    at = 1_790_000_000.5
    envelopes = [envelope(i) for i in range(3)]
    new = [new_message("q", env, at) for env in envelopes]
    new[1].created_at = at + 1
    assert not _alike(envelopes, new)
    times = [m["created_at"] for m in json.loads(batch_answer(envelopes, new))["messages"]]
    assert times == [
        "2026-09-21T14:13:20.500Z",
        "2026-09-21T14:13:21.500Z",
        "2026-09-21T14:13:20.500Z",
    ]
