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
    QueueList,
    QueuesEvent,
    Readiness,
    Redriven,
    ScheduleList,
    ref,
)
from .api.events import openapi_paths
from .api.hub import MessageEvent
from .model import Batch, Envelope, ErrorInfo, MessageView, RedriveRequest
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
)


def _json(kind: type) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref(kind)}}}


def _problems(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "problem",
            "content": {"application/problem+json": {"schema": ref(Problem)}},
        }
        for code in codes
    }


def _op(summary: str, ok: str, ok_schema: type | None, *codes: int, **more: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {
        ok: {"description": summary, **(_json(ok_schema) if ok_schema else {})}
    }
    responses.update(_problems(*codes))
    return {"summary": summary, "responses": responses, **more}


def _with_repeat(op: dict[str, Any]) -> dict[str, Any]:
    op["responses"]["200"] = {"description": "idempotency key repeated", **_json(MessageView)}
    return op


QUEUE = {
    "name": "queue",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"},
}
SCHEDULE = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"},
}
MESSAGE_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
AUTH = (401, 403)


# Every way a publish can be refused: bad JSON, unknown queue, slow or large body, not JSON,
# not the schema, queue full, draining, and auth.
PUBLISH_ERRORS = (400, 404, 408, 413, 415, 422, 429, 503, *AUTH)


def openapi_document() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, Any] = {
        "/v1/queues/{queue}/messages": {
            "post": _with_repeat(
                _op(
                    "Publish one message",
                    "202",
                    MessageView,
                    *PUBLISH_ERRORS,
                    parameters=[QUEUE],
                    requestBody={"required": True, **_json(Envelope)},
                )
            )
        },
        "/v1/queues/{queue}/messages/batch": {
            "post": _op(
                "Publish a batch, all or nothing",
                "202",
                MessageList,
                *PUBLISH_ERRORS,
                parameters=[QUEUE],
                requestBody={"required": True, **_json(Batch)},
            )
        },
        "/v1/messages/{id}": {
            "get": _op(
                "A message; ?wait=S long-polls until final",
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
                        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
                    },
                ],
            ),
            "delete": _op(
                "Cancel a waiting message",
                "200",
                MessageView,
                404,
                409,
                *AUTH,
                parameters=[MESSAGE_ID],
            ),
        },
        "/v1/queues": {"get": _op("Every queue's figures", "200", QueueList, *AUTH)},
        "/v1/queues/{queue}": {
            "get": _op("One queue's figures", "200", QueueFigures, 404, *AUTH, parameters=[QUEUE])
        },
        "/v1/queues/{queue}/pause": {
            "post": _op(
                "Stop handing out messages", "200", QueueFigures, 404, *AUTH, parameters=[QUEUE]
            )
        },
        "/v1/queues/{queue}/resume": {
            "post": _op(
                "Hand out messages again", "200", QueueFigures, 404, *AUTH, parameters=[QUEUE]
            )
        },
        "/v1/queues/{queue}/dead": {
            "get": _op(
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
            "post": _op(
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
                requestBody={"required": False, **_json(RedriveRequest)},
            )
        },
        "/v1/schedules": {
            "get": _op("Every schedule: next and last run, paused", "200", ScheduleList, *AUTH)
        },
        "/v1/schedules/{name}": {
            "get": _op("One schedule", "200", ScheduleView, 404, *AUTH, parameters=[SCHEDULE])
        },
        "/v1/schedules/{name}/pause": {
            "post": _op(
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
            "post": _op(
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
                "responses": {"200": {"description": "alive", **_json(Liveness)}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    "200": {"description": "ready", **_json(Readiness)},
                    "503": {"description": "not ready", **_json(Readiness)},
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
                    **_problems(*AUTH),
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
