"""The ASGI stack in front of the Quart app, built in one place (asgi_stack) for the server
and the tests alike:

    FrontDoor → FastPublish (optional) → Quart

FrontDoor refuses, with a 400 problem+json, what Quart and werkzeug cannot take: a request
target that is not a path (Quart indexes `path[0]`) and a Host whose labels no DNS name
could have (werkzeug's IDNA step raises while binding the URL map, before any error handler
runs). The probes answer whatever the Host says: an orchestrator's probe must never fail
on it. It is also the last resort: an exception that escapes the layers behind it (one
that Quart's error handlers never saw, or a fault in the fast path's own code) becomes a
500 problem+json with an X-Request-ID, logged and counted, not Hypercorn's bare 500.
"""

from __future__ import annotations

import re
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import BadRequest, SpoolError
from .auth import Authenticator
from .exchange import (
    UNMATCHED,
    ASGIApp,
    Receive,
    Recorder,
    Scope,
    Send,
    header_request_id,
    send_problem,
    unexpected,
)
from .fastpath import FastPublish
from .messages import Publisher
from .services import LiveNode, QueueDirectory

PROBES = frozenset({"/healthz", "/readyz"})
NOT_A_PATH = "the request target must be a path that starts with /"
NOT_A_HOST = "the Host header is not a host name (empty label, or one over 63 bytes)"
# A DNS name: labels of 1 to 63 bytes (RFC 1035), the last one may be empty ("host.").
_DNS_NAME = re.compile(rb"(?:[^.]{1,63}\.)*[^.]{0,63}")


def asgi_stack(
    app: ASGIApp,
    settings: Settings,
    auth: Authenticator,
    recorder: Recorder,
    *,
    queues: QueueDirectory,
    node: LiveNode,
    publisher: Publisher,
    fast_publish: bool,
) -> tuple[ASGIApp, FastPublish | None]:
    """`app` (Quart's asgi_app) behind the layers above; also the fast path, if any."""
    fast = None
    if fast_publish:
        fast = FastPublish(app, settings, queues, node, publisher, auth, recorder)
    return FrontDoor(fast or app, recorder), fast


class FrontDoor:
    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        if path[:1] != "/" and not _absolute_form(path):
            return await self._refuse(scope, send, started, BadRequest(NOT_A_PATH))
        for name, value in scope["headers"]:
            if name == b"host" and not _dns_could_hold(value):
                if path not in PROBES:
                    return await self._refuse(scope, send, started, BadRequest(NOT_A_HOST))
                scope = _without_host(scope)
                break
        answering = False

        async def tracked(event: MutableMapping[str, Any]) -> None:
            nonlocal answering
            answering = True
            await send(event)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if answering:
                raise  # too late for another answer: Hypercorn closes the connection
            await self._refuse(scope, send, started, exc)

    async def _refuse(self, scope: Scope, send: Send, started: float, error: Exception) -> None:
        """Answer `error` (a SpoolError as itself, anything else as a logged 500)."""
        request_id = header_request_id(scope)
        if not isinstance(error, SpoolError):
            error = unexpected(error, request_id)
        await send_problem(send, error, request_id)
        elapsed = time.perf_counter() - started
        # Unmatched: answered before routing, or after the matched route went with Quart's
        # context. A Quart answer that failed in the sending was counted by Quart as well.
        self.recorder.record(scope["method"], UNMATCHED, error.status, scope, request_id, elapsed)


def _absolute_form(target: str) -> bool:
    """An absolute-form target (`http://host/path`, RFC 9112 3.2.2): Quart routes its path."""
    try:
        parts = urlsplit(target)
    except ValueError:  # "http://[x/": not a URL (urlsplit checks the brackets of IPv6)
        return False
    return parts.scheme in ("http", "https") and parts.path[:1] == "/"


def _dns_could_hold(host: bytes) -> bool:
    """Whether the name part of a Host value (before any port) has only labels DNS could
    hold; werkzeug raises on the others."""
    name = host.partition(b":")[0]
    if len(name) < 64:  # no label can be too long: look for an empty one
        return b".." not in name and name[:1] != b"."
    return _DNS_NAME.fullmatch(name) is not None


def _without_host(scope: Scope) -> Scope:
    """The probe's scope with no Host: Quart then names the server by its own address."""
    return {**scope, "headers": [h for h in scope["headers"] if h[0] != b"host"]}
