"""The JSON a request body may hold beyond what msgspec checks: strict UTF-8, no duplicate
keys, bounded nesting, numbers that fit 64 bits or a finite double.

msgspec validates the envelope fast but keeps a duplicate key's last value, passes invalid
UTF-8 inside a raw `body` through, and only fails on deep nesting or out-of-range numbers
when a handler decodes the body later: by then the client has its 202. A document is
proven plain with msgspec and bytes methods (0.6 µs a message); one that is not goes
through the exact pass, the stdlib decoder with hooks, which names what is wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec

from ..errors import BadRequest

# Deeper than any real message; serde_json's default limit is 128, Ruby's 100.
MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class _Refused(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"the body repeats the key {key[:100]!r} in one object")
            seen.add(key)
    return obj


def _int(text: str) -> int:
    if len(text) > 18:
        value = int(text)
        if not _INT_MIN <= value <= _INT_MAX:
            raise _Refused(f"the number {text[:40]}… does not fit in 64 bits")
    return 0  # the values are not kept: this pass only checks


def _float(text: str) -> float:
    if math.isinf(float(text)):
        raise _Refused(f"the number {text[:40]} is out of range for a double")
    return 0.0


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


_decoder = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant
)


def check_document(data: bytes) -> None:
    """BadRequest unless `data` (already valid JSON to msgspec) is a faithful document.

    A large document (a batch) is first offered to _looks_plain, which proves most of them
    plain in bytes methods at about half the cost of the exact pass; anything it cannot
    vouch for, and every small document (where its fixed costs lose), takes the exact pass,
    which names the fault. Both accept exactly the same documents (tests/test_strict.py).
    """
    if len(data) < FAST_PROOF_FROM or not _looks_plain(data):
        _check_exactly(data)


def _looks_plain(data: bytes) -> bool:
    """True only when `data` is valid UTF-8 with no lone surrogate, no duplicate key, no
    nesting deeper than MAX_DEPTH and no number out of range. False means "not proven":
    the exact pass decides.

    msgspec's generic decode refuses bad UTF-8, lone surrogates and out-of-range doubles,
    and keeps one value per key. Outside strings, a colon only ever ends a key: so the
    document repeats a key exactly when it has more colons outside strings than the same
    value re-encoded (msgspec writes every key once). Those colons, the brackets and the
    digits are read off the document with its strings cut out (or, where that cannot
    change the answer, off the whole text), all in bytes methods.
    """
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return False
    again = msgspec.json.encode(value)
    if b"\\" in data:
        skeleton = _without_strings(data)
        if skeleton.count(b":") != _without_strings(again).count(b":"):
            return False
        return _skeleton_is_plain(skeleton)
    # No escapes (the usual batch): each string reads as written, and re-encoded as written,
    # so the colons inside strings are the same on both sides, less those in the values a
    # repeated key drops. Whole-text counts compare the keys.
    if data.count(b":") != again.count(b":"):
        return False
    # The numbers and brackets outside strings are read off the whole text where it can
    # vouch for them, saving the cut of a thousand strings: a number pattern that is not in
    # the whole text is not outside its strings either, and once every string is emptied
    # of its brackets (each pair of quotes then meets) the brackets left are the skeleton's.
    numbers = data.translate(_NUMBER_CLASSES, b"+-")  # without signs: e+000 reads e000
    marks = data.translate(None, _NOT_MARKS).replace(b'""', b"")
    if b"0" * 19 in numbers or b"e000" in numbers or b'"' in marks:
        return _skeleton_is_plain(b"".join(data.translate(None, _UNREAD).split(b'"')[::2]))
    return not _nests_too_deep(marks)


def _skeleton_is_plain(skeleton: bytes) -> bool:
    """No number out of range and no nesting too deep in JSON text without its strings."""
    numbers = skeleton.translate(_NUMBER_CLASSES)
    if b"0" * 19 in numbers or b"e000" in numbers or b"e+000" in numbers:
        return False  # maybe beyond 64 bits, or beyond a double's range
    return not _nests_too_deep(skeleton)


def _without_strings(data: bytes) -> bytes:
    """The JSON text with every string cut out (valid JSON in, escapes and all)."""
    # Escaped backslashes first, then escaped quotes: what is left of `\` never starts an
    # escape, and every `"` left delimits a string, so the odd pieces are the strings.
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(plain.split(b'"')[::2])


def _nests_too_deep(skeleton: bytes) -> bool:
    """Whether JSON text without its strings (_without_strings) nests deeper than MAX_DEPTH.
    Brackets only, then each pass takes out every innermost pair: the passes needed are
    the depth (counted up to MAX_DEPTH + 1)."""
    brackets = skeleton.translate(_BRACKETS, _NOT_BRACKETS)
    if len(brackets) // 2 <= MAX_DEPTH:
        return False  # fewer pairs than levels allowed
    depth = 0
    while brackets and depth <= MAX_DEPTH:
        brackets = brackets.replace(b"[]", b"")
        depth += 1
    return depth > MAX_DEPTH


# Digits as 0, exponents as e, signs as +: then 19 digits in a row (2**63 has 19, so a
# shorter integer always fits) and 3-digit exponents (a double ends near 1e308) are plain
# substrings. Outside strings the only other e is in true and false, never before a digit.
_NUMBER_CLASSES = bytes.maketrans(b"0123456789E-", b"0000000000e+")
FAST_PROOF_FROM = 4096  # bytes
_BRACKETS = bytes.maketrans(b"{}", b"[]")
# Everything but quotes and what the skeleton checks read (commas keep numbers apart).
_UNREAD = bytes(set(range(256)) - set(b'"[]{}:,0123456789eE.+-'))
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_NOT_MARKS = bytes(set(range(256)) - set(b'"[]{}'))


def _check_exactly(data: bytes) -> None:
    try:
        text = data.decode("ascii") if data.isascii() else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid UTF-8 (byte {exc.start})") from None
    if _nests_too_deep(_without_strings(data)):
        raise BadRequest(f"the body nests JSON deeper than {MAX_DEPTH} levels")
    try:
        _decoder.decode(text)
    except _Refused as exc:
        raise BadRequest(str(exc)) from None
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
