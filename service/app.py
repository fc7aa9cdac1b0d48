"""create_app(settings, runtime) → Quart: blueprints, request hooks, the one map from
errors to application/problem+json, and the ASGI stack in front (api/front.py) that the
server and the tests both run.

The runtime is unpacked here, once, into the services the routes use (api/services.py):
no route, hub or middleware reaches the runtime itself."""

from __future__ import annotations

import time
from typing import Any, cast

from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .api import dashboard, events, messages, ops, queues, schedules
from .api.auth import Authenticator
from .api.exchange import (
    PROBLEM,
    REQUEST_ID_HEADER,
    UNMATCHED,
    ASGIApp,
    Recorder,
    Scope,
    problem_body,
    problem_of,
    request_id_for,
    unexpected,
)
from .api.front import asgi_stack
from .api.hub import EventHub, NodeView
from .api.messages import PUBLISHER, Publisher, rate_limit_policies
from .api.services import QueueDirectory, provide
from .config import Settings
from .errors import HeadersTooLarge, SpoolError, UriTooLong
from .runtime import Runtime

# A client that sends its body this slowly is cut off with a 408.
BODY_TIMEOUT_S = 10
# Request heads: the target (path + query) and the header block. Hypercorn refuses a head
# that trickles in past its own bound (serving.MAX_HEAD_BYTES); these catch one that arrives
# whole, with a problem+json answer.
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100


def problem(
    status: int, title: str, detail: str, slug: str, extra: dict[str, Any] | None = None
) -> Response:
    body = problem_body(status, title, detail, slug, extra)
    return Response(body, status=status, content_type=PROBLEM)


def check_head(scope: Any) -> None:
    """414 / 431 for a request target or header block over the bounds above."""
    if len(scope["raw_path"]) + len(scope["query_string"]) > MAX_TARGET_BYTES:
        raise UriTooLong(f"the request target exceeds {MAX_TARGET_BYTES} bytes")
    headers = scope["headers"]
    if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
        raise HeadersTooLarge(
            f"send at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them"
        )


def create_app(settings: Settings, runtime: Runtime, *, fast_publish: bool = True) -> Quart:
    """The app, with the whole ASGI stack installed as its asgi_app: calling it (Hypercorn,
    the test client, httpx's ASGITransport) runs the front door and, unless fast_publish is
    False (tests that compare the two), the publish fast path."""
    app = Quart(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.server.max_body_bytes,
        BODY_TIMEOUT=BODY_TIMEOUT_S,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    auth = Authenticator(settings.auth)
    recorder = Recorder(runtime.metrics)
    directory = QueueDirectory(settings.queues)
    publisher = Publisher(
        runtime.broker,
        runtime.metrics,
        settings.server.max_batch,
        rate_limit_policies(settings.queues),
        runtime.spans,
    )
    provide(
        app.extensions,
        broker=runtime.broker,
        queues=directory,
        node=runtime,  # read through api.services.LiveNode only
        metrics=runtime.metrics,
        executors=runtime.executors,
        scheduler=runtime.scheduler,
    )
    app.extensions[PUBLISHER] = publisher
    app.extensions["spool.settings"] = settings
    app.extensions["spool.auth"] = auth
    node_view = NodeView(settings, runtime, runtime.executors)
    event_hub = app.extensions["spool.events"] = EventHub(runtime.broker, node_view)
    for blueprint in (messages.bp, queues.bp, schedules.bp, ops.bp, events.bp, dashboard.bp):
        app.register_blueprint(blueprint)
    app.before_serving(event_hub.attach)
    app.after_serving(event_hub.detach)

    @app.before_request
    async def start_request() -> None:
        g.started = time.perf_counter()
        g.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        check_head(request.scope)

    @app.after_request
    async def finish_request(response: Response) -> Response:
        started = getattr(g, "started", None)
        response.headers[REQUEST_ID_HEADER] = getattr(g, "request_id", "")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
            recorder.record(
                request.method,
                rule,
                response.status_code,
                cast(Scope, request.scope),
                g.request_id,
                time.perf_counter() - started,
            )
        return response

    @app.errorhandler(SpoolError)
    async def spool_error(exc: SpoolError) -> Response:
        body, headers = problem_of(exc)
        return Response(body, status=exc.status, content_type=PROBLEM, headers=headers)

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
    async def unexpected_error(exc: Exception) -> Response:
        return await spool_error(unexpected(exc, getattr(g, "request_id", "")))

    # Quart's documented way to add middleware: the app stays the object servers are given.
    quart_asgi = cast(ASGIApp, app.asgi_app)
    stack, fast = asgi_stack(
        quart_asgi,
        settings,
        auth,
        recorder,
        queues=directory,
        node=runtime,
        publisher=publisher,
        fast_publish=fast_publish,
    )
    app.asgi_app = stack  # type: ignore[assignment, method-assign]
    app.extensions["spool.fastpath"] = fast
    return app
