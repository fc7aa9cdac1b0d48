"""What every route shares: strict JSON in, JSON out, no publishes while draining."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
from quart import Response, request

from ..errors import BadRequest, Invalid, Unavailable, UnsupportedMediaType
from .services import LiveNode
from .strict import MAX_DEPTH, check_document

T = TypeVar("T")

JSON = "application/json"
_encoder = msgspec.json.Encoder()
# One Decoder per request type, made on first use. Module-level: a Decoder holds no request's
# data, and the types are the code's, so it stays a handful of entries.
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encoded(doc), status=status, content_type=JSON, headers=headers)


def encoded(doc: Any) -> bytes:
    """`doc` as JSON text: bytes are taken as JSON already written (a batch's answer is
    spliced, api/answers.py), so a large answer is not copied again."""
    return doc if type(doc) is bytes else _encoder.encode(doc)


def refuse_when_draining(node: LiveNode) -> None:
    if node.draining:
        raise Unavailable(
            "the service is shutting down; publish to another node or retry", retry_after=5
        )


async def read_json(kind: type[T], *, optional: bool = False) -> T:
    """The request body decoded into `kind`: 415 not JSON, 400 malformed, 422 not the schema.

    With optional=True an empty body (zero bytes, any content type) stands for `{}`.
    """
    data = await request.get_data(cache=False)
    assert isinstance(data, bytes)
    # Only zero bytes are "no body": anything else claims to be a document and must be one
    # (a lone newline or \x0b sent as application/json is malformed JSON, a 400).
    if optional and not data:
        data = b"{}"
    elif request.mimetype != JSON:
        raise UnsupportedMediaType(
            f"send the body as {JSON} (got {request.mimetype or 'no content type'!r})"
        )
    return decode_body(kind, data)


def decode_body(kind: type[T], data: bytes) -> T:
    """`data` decoded into `kind`: BadRequest when malformed, Invalid when not the schema.

    Shared by read_json and the publish fast path (fastpath.py), so both accept exactly the
    same documents.
    """
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        value: T = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(f"the body nests JSON deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        # msgspec checks every string it decodes (a key, a header, an idempotency key) and
        # raises this for one that is not UTF-8; its offset is within that string.
        raise BadRequest(f"the body is not valid UTF-8 (byte {_bad_utf8_at(data)})") from None
    check_document(data)
    return value


def _bad_utf8_at(data: bytes) -> int:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return 0  # not reached: msgspec found a string that is not UTF-8


# Numbers in a query string: ASCII digits only (str.isdigit, int() and float() also take
# '²', Arabic-Indic and fullwidth digits, and '1_0'), and few enough that int() never
# refuses the length (over 4300 digits it raises).
_INTEGER = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})(?:[eE][+-]?[0-9]{1,3})?")


def query_integer(name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter `name` (`default` when absent), within [low, high]."""
    text = request.args.get(name)
    if text is None:
        return default
    if _INTEGER.fullmatch(text) is None or not low <= int(text) <= high:
        raise BadRequest(f"{name}: expected an integer from {low} to {high}")
    return int(text)


def query_seconds(name: str, high: float) -> float | None:
    """The number of seconds in query parameter `name` (None when absent), 0 < it <= high."""
    text = request.args.get(name)
    if text is None:
        return None
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not 0 < value <= high:  # also false for NaN
        raise BadRequest(f"{name}: expected a number of seconds, 0 < {name} <= {high:g}")
    return value


def preferred_wait(prefer: Iterable[str], high: float) -> float | None:
    """N of a `Prefer: wait=N` (RFC 7240: preferences are comma-separated, their parameters
    after `;`; other preferences are ignored), None without one; 0 < N <= high, else 400."""
    for header in prefer:
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() != "wait":
                continue
            text = value.strip().strip('"')
            number = float(text) if _DECIMAL.fullmatch(text) else math.nan
            if not 0 < number <= high:  # also false for NaN
                raise BadRequest(
                    f"Prefer: wait={text}: expected a number of seconds, 0 < wait <= {high:g}"
                )
            return number
    return None


_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")


def invalid(message: str) -> Invalid:
    """msgspec's 'Expected X - at `$.messages[3].delay_s`' → 422 naming messages[3].delay_s."""
    text, _, where = message.rpartition(" - at `")
    if not text:
        text, where = message, ""
    # msgspec writes a dict value's place as `[...]`: the dict's own name is what a client needs
    path = where.rstrip("`").removeprefix("$").lstrip(".").replace("[...]", "")
    for pattern, reason in ((_UNKNOWN, "unknown field"), (_MISSING, "required field is missing")):
        found = pattern.match(text)
        if found:
            path = f"{path}.{found.group(1)}" if path else found.group(1)
            text = reason
    field = path or None
    detail = f"{field}: {text}" if field else text
    return Invalid(detail, field=field)
