"""A raw-ASGI fast path in front of the Quart app, for the route that carries the load:
`POST /v1/queues/{queue}/messages` and `…/messages/batch`.

Quart's request machinery (request and response objects, contexts, hooks, routing) costs
more per publish than the publish itself. This layer answers a publish on its own, with
what the Quart route would send (status, body, Location, X-Request-ID, the HTTP metrics
with the route template, the access-log line), through the same functions the route uses:
`Authenticator.authorize`, `refuse_when_draining`, `decode_body`, the route's `Publisher`,
and the helpers of exchange.py (request id, problem+json, record).

Its refusals (401/403, 503 draining, 400/422 from the body, 429 queue full, 422 batch over
`server.max_batch`) are the route's errors, answered here through the same problem mapping:
replaying them into the route would do the work twice, a full queue's publish included,
exactly when the node is overloaded. An unexpected exception is a logged, counted 500
problem+json. What only the route can tell goes to the Quart app, with whatever body was
read replayed to it: another method or path, a query string, an odd head, an unknown queue
(404), another content type (415), a body too large (413), slow (408) or cut short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

from ..config import Settings
from ..errors import SpoolError
from ..model import Batch, Envelope
from ..tracing import Incoming, incoming
from .auth import Authenticator
from .common import JSON, decode_body, encoded, preferred_wait, refuse_when_draining
from .exchange import (
    ASGIApp,
    Receive,
    Recorder,
    Scope,
    Send,
    request_id_for,
    send_problem,
    unexpected,
)
from .messages import MAX_PUBLISH_WAIT_S, Answer, Publisher
from .services import LiveNode, QueueDirectory

ROUTE_ONE = "/v1/queues/<queue>/messages"
ROUTE_BATCH = "/v1/queues/<queue>/messages/batch"
PREFIX = "/v1/queues/"
# The scope both publish routes require (@requires("publish"); admin always passes).
PUBLISH_SCOPE = frozenset({"publish"})
# A body not complete within this goes to the app, which then applies its own BODY_TIMEOUT_S
# (408): a slow client waits at most this much longer than the route alone would let it.
FAST_BODY_S = 1.0
# Heads the fast path takes as plain (well inside app.check_head's bounds); anything larger
# is left to the app's own checks (414/431).
MAX_HEADERS = 64
MAX_HEAD_BYTES = 8 * 1024
MAX_PATH_BYTES = 1024


class FastPublish:
    """ASGI middleware: the publish routes answered here, what only the route can tell to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        queues: QueueDirectory,
        node: LiveNode,
        publisher: Publisher,
        auth: Authenticator,
        recorder: Recorder,
    ) -> None:
        self.app = app
        self.node = node
        self.publisher = publisher
        self.auth = auth
        self.recorder = recorder
        self.queues = queues
        self.max_body = settings.server.max_body_bytes
        self.answered = 0  # successes answered here
        self.refused = 0  # refusals (and unexpected errors) answered here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, queue = self._route_of(scope)
        if route is None:
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        ctype, auth, rid, length, prefer, trace = _heads(scope["headers"])
        # What the route tells before or while it reads the body (404, 415, 413, 408) is its own.
        if not self._answerable(queue, ctype, length):
            return await self.app(scope, receive, send)
        request_id = request_id_for(rid.decode("latin-1") if rid else None)
        events: list[MutableMapping[str, Any]] = []
        try:
            # The route's checks, in the route's order (messages.publish).
            self.auth.authorize(auth.decode("latin-1") if auth else None, PUBLISH_SCOPE)
            refuse_when_draining(self.node)
            # Prefer: wait=N, checked where the route checks it (before the body is read).
            wait = (
                preferred_wait(prefer, MAX_PUBLISH_WAIT_S)
                if prefer and route == ROUTE_ONE
                else None
            )
            data = await self._read_body(receive, events)
            answer = None if data is None else await self._publish(route, queue, data, trace, wait)
        except SpoolError as exc:
            # Answered here: the route would refuse it in the same words, but only after
            # doing the work again (a full queue's publish, exactly when overloaded).
            return await self._refuse(scope, send, route, exc, request_id, started)
        except Exception as exc:
            error = unexpected(exc, request_id)
            return await self._refuse(scope, send, route, error, request_id, started)
        if answer is None:  # the body is the route's to judge (413, 408)
            return await self.app(scope, _replay(events, receive), send)
        status = await _send_answer(send, answer, request_id)
        self.answered += 1
        elapsed = time.perf_counter() - started
        self.recorder.record("POST", route, status, scope, request_id, elapsed)

    def _route_of(self, scope: Scope) -> tuple[str | None, str]:
        """(route template, queue) of a publish this layer may answer, else (None, "")."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None, ""
        route, queue = _match(scope["path"])
        if route is None or scope.get("query_string") or not self._plain_head(scope):
            return None, ""
        return route, queue

    def _answerable(self, queue: str, ctype: bytes | None, length: bytes | None) -> bool:
        return (
            queue in self.queues
            and _mimetype(ctype) == JSON
            and (length is None or _within(length, self.max_body))
        )

    async def _publish(
        self, route: str, queue: str, data: bytes, trace: Incoming | None, wait: float | None
    ) -> Answer:
        if route == ROUTE_BATCH:
            batch = decode_body(Batch, data)
            refuse_when_draining(self.node)  # again, as the route: the upload may end after a stop
            return await self.publisher.many(queue, batch, trace)
        envelope = decode_body(Envelope, data)
        refuse_when_draining(self.node)
        return await self.publisher.one(queue, envelope, trace, wait)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        route: str,
        error: SpoolError,
        request_id: str,
        started: float,
    ) -> None:
        await send_problem(send, error, request_id)
        self.refused += 1
        elapsed = time.perf_counter() - started
        self.recorder.record("POST", route, error.status, scope, request_id, elapsed)

    def _plain_head(self, scope: Scope) -> bool:
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS or len(scope.get("raw_path") or b"") > MAX_PATH_BYTES:
            return False
        return sum(len(k) + len(v) for k, v in headers) <= MAX_HEAD_BYTES

    async def _read_body(
        self, receive: Receive, events: list[MutableMapping[str, Any]]
    ) -> bytes | None:
        """The whole body, or None (too large, too slow, or the client went away)."""
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(FAST_BODY_S):
                while True:
                    event = await receive()
                    events.append(event)
                    if event["type"] != "http.request":
                        return None
                    chunk = event.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        return None
                    parts.append(chunk)
                    if not event.get("more_body", False):
                        return parts[0] if len(parts) == 1 else b"".join(parts)
        except TimeoutError:
            return None


async def _send_answer(send: Send, answer: Answer, request_id: str) -> int:
    """Sends the route's answer as the route would; returns its status."""
    doc, status, extra = answer
    body = encoded(doc)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if extra:
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


# _heads: content-type, authorization, x-request-id, content-length, Prefer, trace context.
Heads = tuple[
    bytes | None, bytes | None, bytes | None, bytes | None, list[str] | None, Incoming | None
]


def _heads(headers: list[tuple[bytes, bytes]]) -> Heads:
    """The first content-type, authorization, x-request-id and content-length, as sent,
    every Prefer header (None when there is none: the usual case makes no list), and the
    W3C trace context (the first traceparent, every tracestate), read as the route reads it."""
    ctype = auth = rid = length = traceparent = None
    prefer: list[str] | None = None
    tracestate: list[bytes] | None = None
    for name, value in headers:
        if name == b"content-type" and ctype is None:
            ctype = value
        elif name == b"authorization" and auth is None:
            auth = value
        elif name == b"x-request-id" and rid is None:
            rid = value
        elif name == b"content-length" and length is None:
            length = value
        elif name == b"prefer":
            prefer = [*(prefer or ()), value.decode("latin-1")]
        elif name == b"traceparent" and traceparent is None:
            traceparent = value
        elif name == b"tracestate":
            tracestate = [*(tracestate or ()), value]
    trace = None if traceparent is None else _trace(traceparent, tracestate)
    return ctype, auth, rid, length, prefer, trace


def _trace(traceparent: bytes, tracestate: list[bytes] | None) -> Incoming | None:
    """The request's trace context, read as the route reads it (messages._request_trace)."""
    state = None if tracestate is None else b",".join(tracestate).decode("latin-1")
    return incoming(traceparent.decode("latin-1"), state)


def _match(path: str) -> tuple[str | None, str]:
    """(route template, queue) for the two publish paths, else (None, "")."""
    if not path.startswith(PREFIX):
        return None, ""
    parts = path[len(PREFIX) :].split("/")
    if len(parts) == 2 and parts[1] == "messages" and parts[0]:
        return ROUTE_ONE, parts[0]
    if len(parts) == 3 and parts[1] == "messages" and parts[2] == "batch" and parts[0]:
        return ROUTE_BATCH, parts[0]
    return None, ""


def _within(length: bytes, limit: int) -> bool:
    """Whether a Content-Length is a plain number no larger than `limit` (int() refuses
    over 4300 digits: anything longer than 18 is far too large anyway)."""
    return length.isdigit() and len(length) <= 18 and int(length) <= limit


def _mimetype(header: bytes | None) -> str:
    if header is None:
        return ""
    return header.split(b";", 1)[0].strip().lower().decode("latin-1")


def _replay(events: list[MutableMapping[str, Any]], receive: Receive) -> Receive:
    """`receive` for the app: the events the fast path already took, then the rest."""
    pending = list(events)

    async def replayed() -> MutableMapping[str, Any]:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
