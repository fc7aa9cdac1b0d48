"""What every answer shares, whichever layer gives it: the Quart app (app.py), the publish
fast path (fastpath.py) or the front door (front.py).

One rule for the request id, one problem+json document per error, one record (metrics and
access-log line) per answer: a client or an operator cannot tell which layer answered.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
import uuid_utils

from ..errors import SpoolError
from ..metrics import Metrics
from .bodies import Problem

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
access_log = logging.getLogger("service.access")

PROBLEM = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
# The route label of an answer given before (or without) routing.
UNMATCHED = "unmatched"
MAX_LOGGED_PATH = 512
# Label values stay bounded: any other method a client invents is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A client's request id is echoed and logged only when it is short and plain.
REQUEST_ID = re.compile(r"[\w.:@/+=-]{1,128}", re.ASCII)
# What a client is told of an error nobody expected; the log has the rest.
UNEXPECTED = "an unexpected error occurred; see the log"


def new_request_id() -> str:
    """A random UUID4 in hex: uuid_utils' is 0.1 µs where the stdlib's reads os.urandom
    (1.7 µs, a system call), once for every request that comes without an id."""
    return uuid_utils.uuid4().hex


def request_id_for(given: str | None) -> str:
    """The id an answer carries: the client's own when it is plain, else a fresh one."""
    return given if given and REQUEST_ID.fullmatch(given) else new_request_id()


def header_request_id(scope: Scope) -> str:
    """request_id_for the first X-Request-ID of a raw ASGI scope (latin-1, as Quart reads it)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return request_id_for(value.decode("latin-1"))
    return new_request_id()


def log_path(scope: Scope) -> str:
    """The path as the client sent it (still percent-encoded): a decoded %0A or %00 must
    not start a forged line in a text log."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "backslashreplace")
    return raw[:MAX_LOGGED_PATH].decode("ascii", "backslashreplace")


def problem_body(
    status: int, title: str, detail: str, slug: str, extra: dict[str, Any] | None = None
) -> bytes:
    """The problem+json document (bodies.Problem: `extra` may only hold its `field`)."""
    kind = f"https://spool.dev/problems/{slug}"
    return msgspec.json.encode(Problem(kind, title, status, detail, **(extra or {})))


def problem_of(exc: SpoolError) -> tuple[bytes, dict[str, str]]:
    """The one mapping of an error to its answer: the problem+json body (with `field` for a
    422) and the headers it needs (Retry-After, WWW-Authenticate). Status is exc.status."""
    field = getattr(exc, "field", None)
    body = problem_body(
        exc.status, exc.title, exc.detail, exc.slug, {"field": field} if field else None
    )
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return body, headers


async def send_problem(send: Send, exc: SpoolError, request_id: str) -> None:
    """Answer `exc` over raw ASGI, exactly as the app's error handler would."""
    body, extra = problem_of(exc)
    headers = [
        (b"content-type", PROBLEM.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in extra.items()),
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Recorder:
    """The metrics and the access-log line of every answer, from any layer."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # Bound metric children by (method, route, status): one dict lookup per answer.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record(
        self, method: str, route: str, status: int, scope: Scope, request_id: str, elapsed: float
    ) -> None:
        if method not in METHODS:
            method = "other"
        children = self._children.get((method, route, status))
        if children is None:
            metrics = self._metrics
            children = self._children[(method, route, status)] = (
                metrics.http_requests.labels(method, route, str(status)),
                metrics.http_duration.labels(method, route),
            )
        counter, duration = children
        counter.inc()
        duration.observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d",
                method,
                log_path(scope),
                status,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )


def unexpected(exc: BaseException, request_id: str) -> SpoolError:
    """Log an exception nobody expected, with its traceback, and give the error to answer."""
    log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
    return SpoolError(UNEXPECTED)
