"""A raw-ASGI fast path in front of the Quart app, for the route that carries the load:
`POST /v1/queues/{queue}/messages` and `…/messages/batch`.

Quart's request machinery (request and response objects, contexts, hooks, routing) costs
more per publish than the publish itself. This layer answers the plain success on its own,
with what the Quart route would send (status, body, Location, X-Request-ID, the HTTP metrics
with the route template, the access-log line), through the same functions the route uses:
`decode_body`, `publish_one`, `publish_many`.

Everything else goes to the Quart app, with whatever body was read replayed to it: another
method or path, a query string, an odd head, a missing or wrong token, a draining node, an
unknown queue, another content type, a body that is too large, slow, malformed or invalid,
a full queue, a batch over `server.max_batch`. So every error (401/403/404/413/415/400/422/
429/503) is the route's own answer, byte for byte; the fast path only ever adds successes.
A refusal from the broker holds nothing (publish is all or nothing), so the route repeats it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..app import REQUEST_ID, log_path, new_request_id
from ..config import Settings
from ..errors import SpoolError
from ..model import Batch, Envelope
from ..runtime import Runtime
from .auth import Authenticator
from .common import JSON, decode_body, encoded
from .messages import publish_many, publish_one

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
access_log = logging.getLogger("service.access")

ROUTE_ONE = "/v1/queues/<queue>/messages"
ROUTE_BATCH = "/v1/queues/<queue>/messages/batch"
PREFIX = "/v1/queues/"
# A body not complete within this goes to the app, which then applies its own BODY_TIMEOUT_S
# (408): a slow client waits at most this much longer than the route alone would let it.
FAST_BODY_S = 1.0
# Heads the fast path takes as plain (well inside app.check_head's bounds); anything larger
# is left to the app's own checks (414/431).
MAX_HEADERS = 64
MAX_HEAD_BYTES = 8 * 1024
MAX_PATH_BYTES = 1024


class FastPublish:
    """ASGI middleware: the publish routes' successes here, everything else to `app`."""

    def __init__(self, app: ASGIApp, settings: Settings, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.auth = Authenticator(settings.auth)
        self.queues = frozenset(settings.queues)
        self.max_body = settings.server.max_body_bytes
        self._requests: dict[tuple[str, int], Any] = {}  # bound metric children
        self._durations: dict[str, Any] = {}
        self.answered = 0  # successes answered here (the rest went to the app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        route, queue = _match(scope["path"])
        if route is None or scope.get("query_string") or not self._plain_head(scope):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        ctype = auth = rid = length = None
        for name, value in scope["headers"]:
            if name == b"content-type" and ctype is None:
                ctype = value
            elif name == b"authorization" and auth is None:
                auth = value
            elif name == b"x-request-id" and rid is None:
                rid = value
            elif name == b"content-length" and length is None:
                length = value
        request_id = _request_id(rid)
        rt = self.runtime
        if (
            request_id is None
            or not self._allowed(auth)
            or rt.draining
            or queue not in self.queues
            or _mimetype(ctype) != JSON
            or (length is not None and (not length.isdigit() or int(length) > self.max_body))
        ):
            return await self.app(scope, receive, send)
        events: list[MutableMapping[str, Any]] = []
        data = await self._read_body(receive, events)
        if data is None or rt.draining:
            return await self.app(scope, _replay(events, receive), send)
        try:
            if route == ROUTE_BATCH:
                answer = await publish_many(rt, queue, decode_body(Batch, data))
            else:
                answer = await publish_one(rt, queue, decode_body(Envelope, data))
        except SpoolError:
            # Refused before anything was held: the route refuses it again, in its own words.
            return await self.app(scope, _replay(events, receive), send)
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
        self.answered += 1
        self._record(route, status, log_path(scope), request_id, time.perf_counter() - started)

    def _plain_head(self, scope: Scope) -> bool:
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS or len(scope.get("raw_path") or b"") > MAX_PATH_BYTES:
            return False
        return sum(len(k) + len(v) for k, v in headers) <= MAX_HEAD_BYTES

    def _allowed(self, header: bytes | None) -> bool:
        if not self.auth.enabled:
            return True
        try:
            scopes = self.auth.scopes_for(header.decode("latin-1") if header else None)
        except SpoolError:
            return False
        return "admin" in scopes or "publish" in scopes

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

    def _record(self, route: str, status: int, path: str, request_id: str, elapsed: float) -> None:
        """What the app's after_request hook records for every answer."""
        metrics = self.runtime.metrics
        counter = self._requests.get((route, status))
        if counter is None:
            counter = metrics.http_requests.labels("POST", route, str(status))
            self._requests[(route, status)] = counter
        duration = self._durations.get(route)
        if duration is None:
            duration = self._durations[route] = metrics.http_duration.labels("POST", route)
        counter.inc()
        duration.observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d",
                "POST",
                path,
                status,
                extra={
                    "request_id": request_id,
                    "method": "POST",
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )


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


def _mimetype(header: bytes | None) -> str:
    if header is None:
        return ""
    return header.split(b";", 1)[0].strip().lower().decode("latin-1")


def _request_id(header: bytes | None) -> str | None:
    """The id to answer with: a fresh one, the client's plain one (app.REQUEST_ID), or None:
    the app decides what to do with any other."""
    if not header:
        return new_request_id()
    text = header.decode("latin-1")
    return text if REQUEST_ID.fullmatch(text) else None


def _replay(events: list[MutableMapping[str, Any]], receive: Receive) -> Receive:
    """`receive` for the app: the events the fast path already took, then the rest."""
    pending = list(events)

    async def replayed() -> MutableMapping[str, Any]:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
