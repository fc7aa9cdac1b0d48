"""The invariants the hot paths rely on, held by tests instead of comments.

Messages, their views and their records are built positionally where it counts (twice as
fast as keywords): a field inserted into one of those types would shift every argument after
it, silently, floats into floats. These tests pin the orders those calls rely on, check that
every field lands where its name says, keep NO_HEADERS unchangeable, and keep a census of
module-level state.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from service.api.answers import accepted_view
from service.broker.records import MessageRecord, decode_message, encode_message
from service.model import (
    NO_HEADERS,
    Envelope,
    ErrorInfo,
    Message,
    MessageView,
    Progress,
    Status,
    new_message,
)

from .conftest import ROOT

# What each positional construction passes, in order, and where it is.
POSITIONAL_CALLS = {
    # service/broker/fresh.py fresh_messages (the batch path, benchmark B2); the
    # fields after created_at are passed by keyword.
    Message: ("id", "queue", "status", "body", "headers", "priority", "created_at"),
    # service/model.py Message.view and service/api/answers.py accepted_view.
    MessageView: (
        "id",
        "queue",
        "status",
        "body",
        "headers",
        "priority",
        "attempts",
        "result",
        "error",
        "created_at",
        "scheduled_for",
        "started_at",
        "finished_at",
        "progress",
        "trace",
        "expires_at",
    ),
    # service/broker/records.py encode_message (every journal row).
    MessageRecord: (
        "id",
        "queue",
        "status",
        "body",
        "priority",
        "created_at",
        "headers",
        "scheduled_for",
        "attempts",
        "failures",
        "result",
        "error",
        "started_at",
        "finished_at",
        "idempotency_key",
        "snoozes",
        "traceparent",
        "tracestate",
        "expires_at",
    ),
}

# Message fields a record does not keep: the time a message was last queued only feeds the
# wait-time histogram of this process (a restored message has none); a handler's progress
# is this node's alone (SPEC: not persisted, not shared between amqp nodes).
NOT_RECORDED = {"enqueued_at", "progress"}


@pytest.mark.parametrize("kind", list(POSITIONAL_CALLS), ids=lambda k: k.__name__)
def test_positional_constructions_match_the_field_order(kind: type[msgspec.Struct]) -> None:
    expected = POSITIONAL_CALLS[kind]
    assert kind.__struct_fields__[: len(expected)] == expected, (
        f"{kind.__name__}'s fields moved: update its positional constructions (listed in "
        "POSITIONAL_CALLS) along with this pin"
    )


def every_field_set() -> Message:
    """A message whose every field holds a value no other field holds."""
    return Message(
        id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        queue="orders",
        status=Status.RETRYING,
        body=b'{"n":1}',
        headers={"h": "v"},
        priority=7,
        created_at=1_790_000_001.0,
        scheduled_for=1_790_000_002.0,
        attempts=3,
        failures=2,
        result=b'"r"',
        error=ErrorInfo("ValueError", "bad"),
        started_at=1_790_000_003.0,
        finished_at=1_790_000_004.0,
        idempotency_key="key",
        enqueued_at=1_790_000_005.0,
        snoozes=4,
        progress=Progress(0.25, b'{"step":"s"}', 1_790_000_006.0),
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        tracestate="rojo=1",
        expires_at=1_790_000_006.0,
    )


def test_a_view_shows_each_field_of_its_message_under_its_own_name() -> None:
    msg = every_field_set()
    view = json.loads(msgspec.json.encode(msg.view()))
    assert view == {
        "id": msg.id,
        "queue": "orders",
        "status": "retrying",
        "body": {"n": 1},
        "headers": {"h": "v"},
        "priority": 7,
        "attempts": 3,
        "result": "r",
        "error": {"type": "ValueError", "message": "bad"},
        "created_at": "2026-09-21T14:13:21.000Z",
        "scheduled_for": "2026-09-21T14:13:22.000Z",
        "started_at": "2026-09-21T14:13:23.000Z",
        "finished_at": "2026-09-21T14:13:24.000Z",
        "progress": {"fraction": 0.25, "detail": {"step": "s"}, "at": "2026-09-21T14:13:26.000Z"},
        "trace": {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "rojo=1",
        },
        "expires_at": "2026-09-21T14:13:26.000Z",
    }
    accepted = json.loads(msgspec.json.encode(accepted_view(msg)))
    # As its publish accepted it: a delayed message, no attempt yet.
    assert accepted == {
        **view,
        "status": "scheduled",
        "attempts": 0,
        "result": None,
        "error": None,
        "started_at": None,
        "finished_at": None,
        "progress": None,
    }


def test_a_record_gives_back_every_field_it_keeps() -> None:
    msg = every_field_set()
    back = decode_message(encode_message(msg))
    kept = set(Message.__struct_fields__) - NOT_RECORDED
    assert kept <= set(MessageRecord.__struct_fields__), "a new Message field is not recorded"
    assert {f: getattr(back, f) for f in kept} == {f: getattr(msg, f) for f in kept}


def test_no_headers_refuses_every_change_and_writes_as_an_empty_object() -> None:
    changes: list[Callable[[dict[str, str]], object]] = [
        lambda h: h.__setitem__("k", "v"),
        lambda h: h.__delitem__("k"),
        lambda h: h.update(k="v"),
        lambda h: h.setdefault("k", "v"),
        lambda h: h.pop("k", None),
        lambda h: h.popitem(),
        lambda h: h.clear(),
        lambda h: h.__ior__({"k": "v"}),
    ]
    for change in changes:
        with pytest.raises(TypeError, match="NO_HEADERS is shared"):
            change(NO_HEADERS)
    assert NO_HEADERS == {}
    assert msgspec.json.encode(NO_HEADERS) == b"{}"
    plain = new_message("q", msgspec.json.decode(b'{"body":1}', type=Envelope), 0.0)
    assert plain.headers is NO_HEADERS
    own = new_message(
        "q", msgspec.json.decode(b'{"body":1,"headers":{"a":"b"}}', type=Envelope), 0.0
    )
    assert own.headers == {"a": "b"} and own.headers is not NO_HEADERS


# Every piece of module-level mutable state in service/, and why it may be there. A new
# one fails test_module_level_state_is_the_justified_list until it is justified here (and
# in a comment where it is defined) or made an object's.
JUSTIFIED_MODULE_STATE = {
    # Caches of pure functions: an answer depends on the argument alone, so sharing it
    # between apps cannot leak anything from one to another; each is bounded.
    "service/timestamps.py:_to_the_second": "lru_cache: a second's text (pure, 256 entries)",
    "service/timestamps.py:_last_written": "the last time written and its text (pure, one entry)",
    "service/handlers/registry.py:resolve_cached": "lru_cache: a worker process's handlers",
    "service/broker/sqlite_store.py:_upsert_sql": "lru_cache: SQL text for n rows (pure)",
    "service/api/common.py:_decoders": "a Decoder per request type (types are code: bounded)",
    # A worker process's own end of its progress pipe, set once as it starts (init_worker);
    # the server process never sets it.
    "service/calls.py:_progress_sink": "a worker process's progress pipe (set at its start)",
    # Constant tables, never written.
    "service/broker/sqlite.py:_STATUS_TEXT": "constant table",
    "service/client/errors.py:_BY_STATUS": "constant table",
    "service/openapi_parts.py:QUEUE": "constant: part of the OpenAPI document",
    "service/openapi_parts.py:MESSAGE_ID": "constant: part of the OpenAPI document",
    "service/openapi_parts.py:SCHEDULE": "constant: part of the OpenAPI document",
    "service/openapi_parts.py:PREFER": "constant: part of the OpenAPI document",
    "service/openapi_parts.py:PREFERENCE_APPLIED": "constant: part of the OpenAPI document",
    "service/serving.py:BIND_FAILURES": "constant: what a failed bind means, by errno",
    "service/openapi_parts.py:TRACEPARENT": "constant: part of the OpenAPI document",
    "service/openapi_parts.py:TRACESTATE": "constant: part of the OpenAPI document",
}

_MUTABLE_CALLS = {"dict", "list", "set", "bytearray", "defaultdict", "Counter", "deque"}
_CACHES = {"lru_cache", "cache"}


def _module_state(path: Path) -> set[str]:
    """Names of module-level mutable containers, cached functions and `global` targets."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        if value is not None and _is_mutable(value):
            names = (t.id for t in targets if isinstance(t, ast.Name))
            found.update(n for n in names if not n.startswith("__"))  # __all__ is not state
        if isinstance(node, ast.FunctionDef) and any(map(_is_cache, node.decorator_list)):
            found.add(node.name)
    for inner in ast.walk(tree):
        if isinstance(inner, ast.Global):
            found.update(inner.names)
    return found


def _is_mutable(value: ast.expr) -> bool:
    if isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in _MUTABLE_CALLS
    return False


def _is_cache(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", "")
    return name in _CACHES


def test_module_level_state_is_the_justified_list() -> None:
    found = {
        f"{path.relative_to(ROOT)}:{name}"
        for path in sorted((ROOT / "service").rglob("*.py"))
        for name in _module_state(path)
    }
    assert found == set(JUSTIFIED_MODULE_STATE)
