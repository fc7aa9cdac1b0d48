"""What a publish answers: each new message as its publish accepted it.

A new message is shown as accepted (queued, or scheduled when delayed; no attempt yet), not
as it stands when the answer is written: with sqlite or amqp a consumer may already have
taken it by then, and an answer that depended on that race would surprise. GET shows its
progress. A repeated idempotency key answers with the earlier message as it stands.

The usual batch (no keys, no delays, no headers, one priority) holds messages that differ
only by id and body. Its answer is written from one rendered message, cut around those two,
with every id and body spliced in by one bytes.join: 0.1 µs a message, against 0.28 for a
view each encoded by msgspec (a batch of 1,000 spent an eighth of its time here).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter

import msgspec

from ..model import Envelope, Message, MessageView, Status, rfc3339
from ..tracing import TraceView

_id, _body = attrgetter("id"), attrgetter("body")
_delay, _priority = attrgetter("delay_s"), attrgetter("priority")
_key, _headers = attrgetter("idempotency_key"), attrgetter("headers")
_created_at = attrgetter("created_at")
_encode = msgspec.json.Encoder().encode
# Placeholders for the cuts: neither can occur in the rendered rest of a message.
_ID_MARK = "\x00id"
_BODY_MARK = b'"\\u0000body"'


def accepted_view(msg: Message) -> MessageView:
    """The client's view of a new message as its publish accepted it."""
    scheduled = msg.scheduled_for
    # Positional, in MessageView's field order (tests/test_field_order.py pins it).
    return MessageView(
        msg.id,
        msg.queue,
        Status.QUEUED if scheduled is None else Status.SCHEDULED,
        msgspec.Raw(msg.body),
        msg.headers,
        msg.priority,
        0,
        None,
        None,
        rfc3339(msg.created_at),
        rfc3339(scheduled),
        None,
        None,
        None,
        None if msg.traceparent is None else TraceView(msg.traceparent, msg.tracestate),
    )


def batch_answer(envelopes: Sequence[Envelope], new: Sequence[Message]) -> bytes:
    """The JSON of `{"messages": [...]}` for a batch whose every envelope made a new message
    (`new`, in order)."""
    if _alike(envelopes, new):
        return _spliced(new)
    return _encode({"messages": list(map(accepted_view, new))})


def _alike(envelopes: Sequence[Envelope], new: Sequence[Message]) -> bool:
    """Whether the accepted messages differ only by id and body: no envelope sets a delay,
    a key or headers, all share one priority, and all one created_at (each test one C-level
    pass, at most 16 ns a message). Every broker stamps a publish's messages with one time
    (Broker.publish), so the last test holds; it is made anyway, since the spliced answer
    writes the first message's time for all and would be wrong for any that differed."""
    if not new or any(map(_delay, envelopes)) or any(map(_headers, envelopes)):
        return False
    if any(map(_key, envelopes)):  # keys are never empty, so a set one is truthy
        return False
    first = new[0]
    if not all(map(first.priority.__eq__, map(_priority, envelopes))):
        return False
    # list.count compares by identity first, and a publish gives all its messages one float
    # object: a third of the time of comparing each by value.
    return list(map(_created_at, new)).count(first.created_at) == len(new)


def _spliced(new: Sequence[Message]) -> bytes:
    """The answer of alike messages: the first one rendered with marks for its id and body,
    cut there, and every message's id and body put between the pieces. Ids are UUIDs and
    bodies are valid JSON (written raw, as a view writes them), so nothing needs escaping."""
    shape = accepted_view(msgspec.structs.replace(new[0], id=_ID_MARK, body=_BODY_MARK))
    head, after_id = _encode(shape).split(_encode(_ID_MARK)[1:-1], 1)
    middle, tail = after_id.split(_BODY_MARK, 1)
    count = len(new)
    parts: list[bytes] = [b""] * (4 * count)
    parts[0::4] = repeat(tail + b"," + head, count)
    parts[0] = b'{"messages":[' + head
    parts[1::4] = map(str.encode, map(_id, new))
    parts[2::4] = repeat(middle, count)
    parts[3::4] = map(_body, new)
    parts.append(tail + b"]}")
    return b"".join(parts)
