"""The pieces the OpenAPI document (openapi.py) is built of: a JSON body, the problems an
operation can answer, the publish operations' headers, and the shared parameters."""

from __future__ import annotations

from typing import Any

from .api.bodies import Problem, ref
from .api.messages import MAX_PUBLISH_WAIT_S
from .model import MessageView


def json_content(kind: type) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref(kind)}}}


def problems(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "problem",
            "content": {"application/problem+json": {"schema": ref(Problem)}},
        }
        for code in codes
    }


def operation(
    summary: str, ok: str, ok_schema: type | None, *codes: int, **more: Any
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        ok: {"description": summary, **(json_content(ok_schema) if ok_schema else {})}
    }
    responses.update(problems(*codes))
    return {"summary": summary, "responses": responses, **more}


def with_repeat(op: dict[str, Any]) -> dict[str, Any]:
    op["responses"]["200"] = {
        "description": (
            "idempotency key repeated, or (with Prefer: wait=N) the message, final within N s"
        ),
        "headers": {"Preference-Applied": PREFERENCE_APPLIED},
        **json_content(MessageView),
    }
    op["responses"]["202"]["headers"] = {"Preference-Applied": PREFERENCE_APPLIED}
    return op


def with_policy(op: dict[str, Any]) -> dict[str, Any]:
    for status in ("200", "202"):
        if status in op["responses"]:
            op["responses"][status].setdefault("headers", {})["RateLimit-Policy"] = {
                "description": (
                    "Only for a queue with `rate_limit`: the pace its messages run at "
                    '(draft-ietf-httpapi-ratelimit-headers), e.g. `"emails";q=100;w=1`'
                ),
                "schema": {"type": "string"},
            }
    return op


# Prefer: wait=N (RFC 7240) on a single publish.
PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": (
        f"`wait=N` (0 < N <= {MAX_PUBLISH_WAIT_S:g}): answer 200 with the final message if it "
        "ends within N seconds, else the usual 202. Other preferences are ignored; a bad N "
        "is a 400 naming the header. Batches ignore it."
    ),
    "schema": {"type": "string", "examples": ["wait=10"]},
}
# W3C Trace Context on a publish, single or batch (tracing.py).
TRACEPARENT = {
    "name": "traceparent",
    "in": "header",
    "required": False,
    "description": "W3C Trace Context: kept with every message of the request and handed to "
    "each attempt's handler (ctx.trace). An invalid one is ignored, as W3C says.",
    "schema": {
        "type": "string",
        "example": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    },
}
TRACESTATE = {
    "name": "tracestate",
    "in": "header",
    "required": False,
    "description": "W3C Trace Context vendor state, kept with a valid traceparent (at most "
    "512 printable characters; longer is dropped).",
    "schema": {"type": "string"},
}
PREFERENCE_APPLIED = {
    "description": "`wait=N` when a Prefer: wait=N was honoured",
    "schema": {"type": "string"},
}


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
