"""Probes, metrics and the OpenAPI document."""

from __future__ import annotations

from quart import Blueprint, Response, current_app

from ..openapi import openapi_document
from .auth import authenticator
from .bodies import Liveness, Readiness
from .common import json_response
from .services import metrics as registry
from .services import node

bp = Blueprint("ops", __name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/healthz")
async def healthz() -> Response:
    return json_response(Liveness("ok"))


@bp.get("/readyz")
async def readyz() -> Response:
    checks = node().health()
    ready = all(bool(check.get("ok")) for check in checks.values())
    return json_response(
        Readiness("ready" if ready else "not_ready", checks), 200 if ready else 503
    )


@bp.get("/metrics")
async def metrics() -> Response:
    auth = authenticator(current_app.extensions)
    if not auth.public_metrics:
        auth.check(frozenset({"read"}))
    return Response(registry().render(), content_type=PROMETHEUS_TEXT)


@bp.get("/openapi.json")
async def openapi() -> Response:
    doc = current_app.extensions.get("spool.openapi")
    if doc is None:
        doc = current_app.extensions["spool.openapi"] = openapi_document()
    return json_response(doc)
