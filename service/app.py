"""create_app(settings, runtime) → Quart: blueprints, request hooks, and the one map from
errors to application/problem+json."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import msgspec
import uuid_utils
from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .api import dashboard, events, messages, ops, queues
from .api.auth import Authenticator
from .api.hub import EventHub
from .config import Settings
from .errors import HeadersTooLarge, SpoolError, UriTooLong
from .runtime import Runtime

log = logging.getLogger(__name__)
access_log = logging.getLogger("service.access")

PROBLEM = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
# A client that sends its body this slowly is cut off with a 408.
BODY_TIMEOUT_S = 10
# Request heads: the target (path + query) and the header block. Hypercorn refuses a head
# that trickles in past its own bound (cli.MAX_HEAD_BYTES); these catch one that arrives
# whole, with a problem+json answer.
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_LOGGED_PATH = 512
# Label values stay bounded: any other method a client invents is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A client's request id is echoed and logged only when it is short and plain.
REQUEST_ID = re.compile(r"[\w.:@/+=-]{1,128}", re.ASCII)


def new_request_id() -> str:
    """A random UUID4 in hex: uuid_utils' is 0.1 µs where the stdlib's reads os.urandom
    (1.7 µs, a system call), once for every request that comes without an id."""
    return uuid_utils.uuid4().hex


def problem(
    status: int, title: str, detail: str, slug: str, extra: dict[str, Any] | None = None
) -> Response:
    doc: dict[str, Any] = {
        "type": f"https://spool.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if extra:
        doc.update(extra)
    return Response(msgspec.json.encode(doc), status=status, content_type=PROBLEM)


def log_path(scope: Any) -> str:
    """The path as the client sent it (still percent-encoded): a decoded %0A or %00 must
    not start a forged line in a text log."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "backslashreplace")
    return raw[:MAX_LOGGED_PATH].decode("ascii", "backslashreplace")


def check_head(scope: Any) -> None:
    """414 / 431 for a request target or header block over the bounds above."""
    if len(scope["raw_path"]) + len(scope["query_string"]) > MAX_TARGET_BYTES:
        raise UriTooLong(f"the request target exceeds {MAX_TARGET_BYTES} bytes")
    headers = scope["headers"]
    if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
        raise HeadersTooLarge(
            f"send at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them"
        )


def create_app(settings: Settings, runtime: Runtime) -> Quart:
    app = Quart(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.server.max_body_bytes,
        BODY_TIMEOUT=BODY_TIMEOUT_S,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.extensions["spool.runtime"] = runtime
    app.extensions["spool.settings"] = settings
    app.extensions["spool.auth"] = Authenticator(settings.auth)
    event_hub = app.extensions["spool.events"] = EventHub(runtime)
    for blueprint in (messages.bp, queues.bp, ops.bp, events.bp, dashboard.bp):
        app.register_blueprint(blueprint)
    app.before_serving(event_hub.attach)
    app.after_serving(event_hub.detach)

    metrics = runtime.metrics

    @app.before_request
    async def start_request() -> None:
        g.started = time.perf_counter()
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else new_request_id()
        check_head(request.scope)

    @app.after_request
    async def finish_request(response: Response) -> Response:
        started = getattr(g, "started", None)
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        response.headers[REQUEST_ID_HEADER] = getattr(g, "request_id", "")
        if started is not None:
            elapsed = time.perf_counter() - started
            method = request.method if request.method in METHODS else "other"
            metrics.http_requests.labels(method, rule, str(response.status_code)).inc()
            metrics.http_duration.labels(method, rule).observe(elapsed)
            access_log.info(
                "%s %s %d",
                method,
                log_path(request.scope),
                response.status_code,
                extra={
                    "request_id": g.request_id,
                    "method": method,
                    "route": rule,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
        return response

    @app.errorhandler(SpoolError)
    async def spool_error(exc: SpoolError) -> Response:
        extra: dict[str, Any] = {}
        field = getattr(exc, "field", None)
        if field:
            extra["field"] = field
        response = problem(exc.status, exc.title, exc.detail, exc.slug, extra)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(exc: RequestEntityTooLarge) -> Response:
        return problem(
            413,
            "Payload too large",
            f"the request body exceeds server.max_body_bytes ({settings.server.max_body_bytes})",
            "too-large",
        )

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = problem(status, exc.name, exc.description or exc.name, f"http-{status}")
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.error(
            "unhandled error", exc_info=exc, extra={"request_id": getattr(g, "request_id", "")}
        )
        return problem(
            500, "Internal error", "an unexpected error occurred; see the log", "internal"
        )

    return app
