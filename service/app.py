"""create_app(settings, runtime) → Quart: blueprints, request hooks, and the one map from
errors to application/problem+json."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import msgspec
from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .api import dashboard, events, messages, ops, queues
from .api.auth import Authenticator
from .api.hub import EventHub
from .config import Settings
from .errors import SpoolError
from .runtime import Runtime

log = logging.getLogger(__name__)
access_log = logging.getLogger("service.access")

PROBLEM = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
BODY_TIMEOUT_S = 10


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
        g.request_id = request.headers.get(REQUEST_ID_HEADER, "")[:200] or uuid.uuid4().hex

    @app.after_request
    async def finish_request(response: Response) -> Response:
        started = getattr(g, "started", None)
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        response.headers[REQUEST_ID_HEADER] = getattr(g, "request_id", "")
        if started is not None:
            elapsed = time.perf_counter() - started
            metrics.http_requests.labels(request.method, rule, str(response.status_code)).inc()
            metrics.http_duration.labels(request.method, rule).observe(elapsed)
            access_log.info(
                "%s %s %d",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "request_id": g.request_id,
                    "method": request.method,
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
