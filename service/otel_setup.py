"""Whether this process exports spans: OpenTelemetry's (service/otel.py) when the standard
OTEL_* variables ask for them, else none.

Apart from tracing.py, since otel.py builds on tracing.py: the lazy import of otel.py from
here keeps the two from importing each other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .tracing import Spans

log = logging.getLogger(__name__)


def spans_from_environment(environ: Mapping[str, str] = os.environ) -> Spans | None:
    """OpenTelemetry spans when the standard variables ask for traces to be exported
    (OTEL_TRACES_EXPORTER other than none, or an OTLP endpoint) and OTEL_SDK_DISABLED does
    not say no; else None, and nothing of OpenTelemetry is imported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter == "none" or not (exporter or endpoint):
        return None
    try:
        from .otel import OtelSpans
    except ImportError as exc:
        log.warning(
            "OTEL_* asks for traces but OpenTelemetry is not installed (%s): pip install "
            "'spool[otel]'. Trace context is still passed on to handlers and logs.",
            exc,
        )
        return None
    return OtelSpans.from_environment()
