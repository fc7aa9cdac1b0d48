"""The live view: `GET /v1/events` (Server-Sent Events) and `GET /v1/node`.

The hub (hub.py) feeds the streams, a tick's events at a time; a stream that falls too far
behind is dropped, and one whose client takes no bytes is cut off (connections.py).

Stream: `event: queues` once a second with `{"queues":[figures + "latency"], "node":{…}}`,
`event: message` with `{"id","queue","status","attempts"}` for every message that changed,
its latest status, every tick (hub.FLUSH_S); `event: progress` with `{"id","queue",
"progress"}` for every running message whose handler reported progress (its latest). Streams end when a graceful stop begins; a new
one is refused with 503 while the node drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from quart import Blueprint, Response, current_app, request

from .auth import authenticator, requires
from .bodies import NodeFigures, Problem, QueueHistory, ref
from .common import json_response, refuse_when_draining
from .history import HISTORY_SAMPLES, SAMPLE_S
from .hub import CLIENT_BUFFER_BYTES, FLUSH_S, EventHub, Subscription
from .services import LiveNode, queue_directory
from .services import node as live_node

bp = Blueprint("events", __name__)

TICK_S = 1.0  # one `event: queues` a second
DRAIN_CHECK_S = 0.25  # how soon an open stream notices a graceful stop
RECONNECT_MS = 2000


def hub() -> EventHub:
    found: EventHub = current_app.extensions["spool.events"]
    return found


@bp.get("/v1/events")
@requires("read")
async def events() -> Response:
    wanted = request.args.getlist("queue")
    queues = queue_directory()
    for name in wanted:
        queues.exists(name)
    live = live_node()
    refuse_when_draining(live)
    events_hub = hub()
    sub = events_hub.subscribe(wanted or None)
    response = Response(
        _stream(live, events_hub, sub),
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a stream lasts as long as the client or the node
    return response


async def _stream(live: LiveNode, events_hub: EventHub, sub: Subscription) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    try:
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        next_tick = 0.0
        while not live.draining and not sub.dropped:
            if loop.time() >= next_tick:
                yield await events_hub.queues_event(sub.queues)
                next_tick = loop.time() + TICK_S
            chunk = sub.take()  # every tick delivered since the last write, in one write
            if chunk:
                yield chunk
            await sub.wait(min(next_tick - loop.time(), DRAIN_CHECK_S))
    finally:
        events_hub.unsubscribe(sub)


@bp.get("/v1/queues/<queue>/history")
@requires("read")
async def history(queue: str) -> Response:
    """The queue's counts once a second over the last five minutes: what a dashboard draws
    its rate charts from when it opens, before the stream has said anything."""
    queue_directory().exists(queue)
    return json_response(hub().history.of(queue))


@bp.get("/v1/node")
@requires("publish", "read")
async def node() -> Response:
    """This node's figures, and the scopes of the caller's token (what a dashboard may offer)."""
    events_hub = hub()
    auth = authenticator(current_app.extensions)
    if auth.enabled:
        scopes = sorted(auth.scopes_for(request.headers.get("Authorization")))
    else:
        scopes = ["admin", "publish", "read"]
    state = msgspec.structs.asdict(events_hub.node.state())
    return json_response(
        NodeFigures(**state, auth=auth.enabled, scopes=scopes, streams=events_hub.subscribers)
    )


def openapi_paths() -> dict[str, Any]:
    """This module's routes and the dashboard's, for /openapi.json."""

    def problems(*codes: int) -> dict[str, Any]:
        content = {"application/problem+json": {"schema": ref(Problem)}}
        return {str(c): {"description": "problem", "content": content} for c in codes}

    def text(kind: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {kind: {"schema": {"type": "string"}}}}

    queue_names = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"}
    return {
        "/v1/events": {
            "get": {
                "summary": "Live queue figures and message transitions (Server-Sent Events)",
                "description": (
                    "Once a second `event: queues` with a QueuesEvent (each queue's figures "
                    "with latency: seconds over the last 5 minutes, null without samples). "
                    f"Every {FLUSH_S:g} s, for each message that changed, `event: message` "
                    "with a MessageEvent of its latest status (intermediate statuses within "
                    "that time may be skipped; the latest never is), and for each running "
                    "message whose handler reported progress on this node, `event: progress` "
                    "with a ProgressEvent of its latest report. A stream "
                    f"{CLIENT_BUFFER_BYTES >> 20} MiB of events behind is dropped, a client that "
                    "takes no bytes for server.send_timeout_s is disconnected, and streams end "
                    "at a graceful stop."
                ),
                "parameters": [
                    {
                        "name": "queue",
                        "in": "query",
                        "required": False,
                        "explode": True,
                        "schema": {"type": "array", "items": queue_names},
                    }
                ],
                "responses": {
                    "200": text("text/event-stream", "the stream"),
                    **problems(401, 403, 404, 503),
                },
            }
        },
        "/v1/queues/{queue}/history": {
            "get": {
                "summary": "The queue's counts once a second over the last five minutes",
                "description": (
                    f"Up to {HISTORY_SAMPLES} samples, one every {SAMPLE_S:g} s, oldest first: "
                    "each the queue's counts (totals, as in QueueFigures) at time `t`. A rate is "
                    "the difference of two samples over their times. Kept in memory on this "
                    "node from its start: empty just after a start, five minutes deep after "
                    "five minutes."
                ),
                "parameters": [
                    {"name": "queue", "in": "path", "required": True, "schema": queue_names}
                ],
                "responses": {
                    "200": {
                        "description": "the history",
                        "content": {"application/json": {"schema": ref(QueueHistory)}},
                    },
                    **problems(401, 403, 404),
                },
            }
        },
        "/v1/node": {
            "get": {
                "summary": "This node's figures and the caller's scopes",
                "responses": {
                    "200": {
                        "description": "node figures",
                        "content": {"application/json": {"schema": ref(NodeFigures)}},
                    },
                    **problems(401, 403),
                },
            }
        },
        "/": {"get": {"summary": "The dashboard", "responses": {"200": text("text/html", "page")}}},
    }
