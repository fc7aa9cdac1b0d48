"""The OpenAPI 3.1 document, built from the msgspec types the routes decode requests into and
encode answers from (model.py, api/bodies.py), so it cannot say what the API does not do."""

from __future__ import annotations

from typing import Any

import msgspec

from ._version import __version__
from .api.bodies import (
    DeadPage,
    Liveness,
    MessageList,
    NodeFigures,
    Problem,
    QueueFigures,
    QueueHistory,
    QueueList,
    QueuesEvent,
    Readiness,
    Redriven,
    ScheduleList,
)
from .api.events import openapi_paths
from .api.hub import MessageEvent, ProgressEvent
from .api.messages import MAX_WAIT_S, WAIT_FOR
from .model import Batch, Envelope, ErrorInfo, MessageView, ProgressView, RedriveRequest
from .openapi_parts import (
    AUTH,
    MESSAGE_ID,
    PREFER,
    PUBLISH_ERRORS,
    QUEUE,
    SCHEDULE,
    TRACEPARENT,
    TRACESTATE,
    json_content,
    operation,
    problems,
    with_policy,
    with_repeat,
)
from .scheduler import ScheduleView

# The component schemas, generated from the types the routes decode and encode (with every
# type they hold). tests/test_openapi.py checks that every $ref of the document is here.
_TYPES = (
    Envelope,
    Batch,
    MessageView,
    ErrorInfo,
    RedriveRequest,
    Problem,
    MessageList,
    DeadPage,
    QueueFigures,
    QueueList,
    Redriven,
    Liveness,
    Readiness,
    NodeFigures,
    QueuesEvent,
    MessageEvent,
    ScheduleList,
    ScheduleView,
    QueueHistory,
    ProgressView,
    ProgressEvent,
)


def openapi_document() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, Any] = {
        "/v1/queues/{queue}/messages": {
            "post": with_policy(
                with_repeat(
                    operation(
                        "Publish one message",
                        "202",
                        MessageView,
                        *PUBLISH_ERRORS,
                        parameters=[QUEUE, PREFER, TRACEPARENT, TRACESTATE],
                        requestBody={"required": True, **json_content(Envelope)},
                    )
                )
            )
        },
        "/v1/queues/{queue}/messages/batch": {
            "post": with_policy(
                operation(
                    "Publish a batch, all or nothing",
                    "202",
                    MessageList,
                    *PUBLISH_ERRORS,
                    parameters=[QUEUE, TRACEPARENT, TRACESTATE],
                    requestBody={"required": True, **json_content(Batch)},
                )
            )
        },
        "/v1/messages/{id}": {
            "get": operation(
                "A message; ?wait=S long-polls until final (or, with wait_for=progress, "
                "until its next progress report)",
                "200",
                MessageView,
                400,
                404,
                *AUTH,
                parameters=[
                    MESSAGE_ID,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": MAX_WAIT_S,
                        },
                    },
                    {
                        "name": "wait_for",
                        "in": "query",
                        "required": False,
                        "description": "what ends a ?wait= early: the final status (default) "
                        "or also the next progress report of the handler on this node",
                        "schema": {"type": "string", "enum": list(WAIT_FOR), "default": "final"},
                    },
                ],
            ),
            "delete": operation(
                "Cancel a waiting message",
                "200",
                MessageView,
                404,
                409,
                *AUTH,
                parameters=[MESSAGE_ID],
            ),
        },
        "/v1/queues": {"get": operation("Every queue's figures", "200", QueueList, *AUTH)},
        "/v1/queues/{queue}": {
            "get": operation(
                "One queue's figures", "200", QueueFigures, 404, *AUTH, parameters=[QUEUE]
            )
        },
        "/v1/queues/{queue}/pause": {
            "post": operation(
                "Stop handing out messages", "200", QueueFigures, 404, *AUTH, parameters=[QUEUE]
            )
        },
        "/v1/queues/{queue}/resume": {
            "post": operation(
                "Hand out messages again", "200", QueueFigures, 404, *AUTH, parameters=[QUEUE]
            )
        },
        "/v1/queues/{queue}/dead": {
            "get": operation(
                "Dead letters, newest first",
                "200",
                DeadPage,
                400,
                404,
                *AUTH,
                parameters=[
                    QUEUE,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
            )
        },
        "/v1/queues/{queue}/dead/redrive": {
            "post": operation(
                "Put dead letters back on the queue",
                "200",
                Redriven,
                400,
                404,
                408,
                413,
                415,
                422,
                429,
                *AUTH,
                parameters=[QUEUE],
                requestBody={"required": False, **json_content(RedriveRequest)},
            )
        },
        "/v1/schedules": {
            "get": operation(
                "Every schedule: next and last run, paused", "200", ScheduleList, *AUTH
            )
        },
        "/v1/schedules/{name}": {
            "get": operation("One schedule", "200", ScheduleView, 404, *AUTH, parameters=[SCHEDULE])
        },
        "/v1/schedules/{name}/pause": {
            "post": operation(
                "Stop publishing its ticks (admin)",
                "200",
                ScheduleView,
                404,
                503,
                *AUTH,
                parameters=[SCHEDULE],
            )
        },
        "/v1/schedules/{name}/resume": {
            "post": operation(
                "Publish its ticks again, from the next one (admin)",
                "200",
                ScheduleView,
                404,
                503,
                *AUTH,
                parameters=[SCHEDULE],
            )
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": {"description": "alive", **json_content(Liveness)}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    "200": {"description": "ready", **json_content(Readiness)},
                    "503": {"description": "not ready", **json_content(Readiness)},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **problems(*AUTH),
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}
        },
    }
    paths.update(openapi_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Spool",
            "version": __version__,
            "description": "HTTP message queue: publish JSON, handlers run it, read the outcome.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }
