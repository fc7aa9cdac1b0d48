"""What a failed attempt records, whatever the handler raised or returned.

A handler's exception runs its own code when it is turned into text: str() may raise,
return a non-string or a str subclass, hold a lone surrogate (which JSON cannot carry) or
be a megabyte long. Recording the outcome must never fail on that, or the message would be
left `running`; so the error's type and message are always plain, encodable, bounded text.
"""

from __future__ import annotations

import traceback
from typing import Any

import msgspec

# error.message is cut to this many characters (the cut one ends with TRUNCATED_MARK).
MAX_ERROR_MESSAGE_CHARS = 4096
# The traceback goes to the log only, but a huge str() would fill it all the same.
MAX_TRACEBACK_CHARS = 16384
MAX_TYPE_NAME_CHARS = 200
TRUNCATED_MARK = "… [truncated]"


class HandlerFailure(Exception):
    """An attempt failed; `type_name` and `message` become the message's error."""

    def __init__(self, type_name: str, message: str, tb: str | None = None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.tb = tb


class RateLimited(Exception):
    """Raised (or returned) by a handler to run the message again after `retry_after_s`
    seconds without counting the attempt (a "snooze"): the downstream service said 429.
    Public as service.handlers.RateLimited."""

    def __init__(self, retry_after_s: float = 1.0) -> None:
        if isinstance(retry_after_s, bool) or not isinstance(retry_after_s, int | float):
            raise TypeError(f"retry_after_s must be a number, got {type(retry_after_s).__name__}")
        super().__init__(f"rate limited: run again after {retry_after_s:g} s")
        self.retry_after_s = float(retry_after_s)


class HandlerSnoozed(HandlerFailure):
    """Not a failure: how a RateLimited reaches the consumer through the paths that carry
    HandlerFailure (threads, process workers, the async runner)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("RateLimited", f"run again after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


class HandlerTimeout(HandlerFailure):
    def __init__(self, timeout: float) -> None:
        super().__init__("Timeout", f"the handler ran longer than {timeout:g} s")


class HandlerExit(Exception):
    """A handler raised SystemExit, KeyboardInterrupt or another BaseException: a failed
    attempt like any other, never a way to stop the consumer (or the service). An Exception,
    so neither a worker thread nor the event loop takes it for a request to exit."""

    def __init__(self, cause: BaseException) -> None:
        self.type_name, self.message = describe(cause)
        self.tb = format_traceback(cause)
        super().__init__(self.message)


def failure_of(exc: BaseException) -> HandlerFailure:
    """The HandlerFailure that records `exc` (itself, when it is one already)."""
    if isinstance(exc, HandlerFailure):
        return exc
    if isinstance(exc, RateLimited):
        return HandlerSnoozed(exc.retry_after_s)
    if isinstance(exc, HandlerExit):
        return HandlerFailure(exc.type_name, exc.message, exc.tb)
    type_name, message = describe(exc)
    return HandlerFailure(type_name, message, format_traceback(exc))


def encode_result(result: Any) -> bytes:
    if isinstance(result, RateLimited):  # returned rather than raised: the same snooze
        raise HandlerSnoozed(result.retry_after_s)
    try:
        return msgspec.json.encode(result)
    except Exception as exc:
        # TypeError (an object), ValueError (a lone surrogate), OverflowError (a huge int),
        # RecursionError (a result that contains itself): all mean the same to the user.
        raise HandlerFailure("ResultNotSerializable", describe(exc)[1]) from None


def describe(exc: BaseException) -> tuple[str, str]:
    """(type name, message): str(exc), else repr(exc), else `<unprintable TypeName>`."""
    type_name = bounded_text(type(exc).__name__, MAX_TYPE_NAME_CHARS)
    return type_name, bounded_text(_text_of(exc, type_name), MAX_ERROR_MESSAGE_CHARS)


def format_traceback(exc: BaseException) -> str | None:
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        return None  # the traceback is for the log only: its error and message are recorded
    return bounded_text(text, MAX_TRACEBACK_CHARS)


def bounded_text(text: str, limit: int) -> str:
    """A plain str (not a subclass: msgspec encodes only str itself), lone surrogates
    escaped as `\\udXXX`, at most `limit` characters."""
    text = str.__str__(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[: limit - len(TRUNCATED_MARK)] + TRUNCATED_MARK
    return text


def _text_of(exc: BaseException, type_name: str) -> str:
    for render in (str, repr):
        try:
            return render(exc)
        except BaseException:
            # Its own __str__ may raise anything, SystemExit included. Not a cancellation of
            # ours: a task is cancelled only at an await, and there is none here.
            continue
    return f"<unprintable {type_name}>"
