"""The fast proof that a body is plain JSON never vouches for one the exact pass refuses,
and both together refuse what they must."""

from __future__ import annotations

import json
import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.strict import MAX_DEPTH, _check_exactly, _looks_plain, check_document
from service.errors import BadRequest

# Strings that stress the string cutting: quotes, backslashes, brackets and colons inside.
tricky_text = st.sampled_from(
    ['a"b', "a\\", "\\\\", '\\"', "[", "]", "{", "}", ":", '":"', "\\u005c", "é", "\U0001f600"]
)
keys = st.one_of(st.text(max_size=4), tricky_text)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    tricky_text,
)
documents = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=30,
)


def exact_accepts(data: bytes) -> bool:
    try:
        _check_exactly(data)
    except BadRequest:
        return False
    return True


def dumps(doc: object, *, repeat: bool, pretty: bool) -> str:
    """json.dumps, except that with `repeat` every object writes its first key twice."""
    sep = "\n " if pretty else ""
    if isinstance(doc, dict):
        items = [
            f"{json.dumps(k, ensure_ascii=pretty)}:{dumps(v, repeat=repeat, pretty=pretty)}"
            for k, v in doc.items()
        ]
        if repeat and items:
            items.insert(0, items[0])
        return "{" + sep + ("," + sep).join(items) + "}"
    if isinstance(doc, list):
        return "[" + sep + ",".join(dumps(v, repeat=repeat, pretty=pretty) for v in doc) + "]"
    return json.dumps(doc, ensure_ascii=pretty)


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans(), st.booleans())
def test_the_fast_proof_never_vouches_for_a_document_the_exact_pass_refuses(
    doc: object, pretty: bool, repeat: bool
) -> None:
    data = dumps(doc, repeat=repeat, pretty=pretty).encode()
    if _looks_plain(data):
        assert exact_accepts(data), data
    elif not repeat:
        # Not proven is fine, but only for documents with a reason: a repeat or a number
        # the fast proof cannot range (≥ 19 digits or a 3-digit exponent).
        assert re.search(rb"\d{19}|[eE][-+]?\d{3}", data) or not exact_accepts(data), data


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "a": 2}',
        b'{"x": {"k": 1, "k": 1}}',
        b'[{"a": "\\\\", "a": 0}]',
        b'{"a\\"": 1, "a\\"": 2}',
        b'{"body": ' + b"9" * 20 + b"}",
        b'{"body": -9223372036854775809}',
        b'{"body": 18446744073709551616}',
        b'{"body": 1e999}',
        b'{"body": -1E+400}',
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
        b'{"body": "\xff"}',
    ],
)
def test_documents_that_must_be_refused_are(data: bytes) -> None:
    assert not _looks_plain(data)
    with pytest.raises(BadRequest):
        check_document(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "b": {"a": 2}}',  # the same key in two objects is fine
        b'{"body": "[[[[ {{{{ :::: \\" \\\\"}',
        b'{"body": 9223372036854775807}',
        b'{"body": 18446744073709551615}',
        b'{"body": 1.5e308}',
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
        b'{"sku": "12345678901234567890"}',  # long digits inside a string
    ],
)
def test_documents_that_are_fine_pass(data: bytes) -> None:
    check_document(data)


def test_a_batch_of_plain_messages_is_proven_without_the_exact_pass() -> None:
    batch = msgspec.json.encode(
        {"messages": [{"body": {"order": i, "sku": "A-17", "qty": 2}} for i in range(1000)]}
    )
    assert _looks_plain(batch)


@pytest.mark.parametrize(
    "note",
    [
        "[[ {{ ]",  # brackets inside strings: the skeleton is cut, not read off the whole text
        "card 4111111111111111111 e+123",  # number-like runs inside strings, likewise
    ],
)
def test_strings_that_look_like_structure_are_still_proven_plain(note: str) -> None:
    batch = msgspec.json.encode(
        {"messages": [{"body": {"order": i, "note": note}} for i in range(300)]}
    )
    assert len(batch) > 4096
    assert _looks_plain(batch)


@pytest.mark.parametrize(
    "fault",
    [
        b'{"k": 1, "k": 2}',
        b'{"k": "a:b", "k": 2}',  # the dropped value's colons must not hide the repeat
        b"12345678901234567890123",
        b"1e999",
        b"[" * 70 + b"]" * 70,
    ],
)
# With and without escapes: the fast proof counts keys one of two ways.
@pytest.mark.parametrize("note", [b'a \\" [ { :', b"a [ { : ]] }", b"no marks e000 12345"])
def test_a_large_batch_with_one_bad_message_is_refused(fault: bytes, note: bytes) -> None:
    plain = [b'{"body": {"order": %d, "note": "%s"}}' % (i, note) for i in range(300)]
    plain[157] = b'{"body": ' + fault + b"}"
    batch = b'{"messages": [' + b",".join(plain) + b"]}"
    assert len(batch) > 4096  # large enough to be offered to the fast proof
    with pytest.raises(BadRequest):
        check_document(batch)
