"""Spans with OpenTelemetry (the `otel` extra): "publish QUEUE" (PRODUCER) for each publish
request and "process QUEUE" (CONSUMER) for each attempt, the attempt a child of the publish
whose context the message carries (W3C Trace Context).

Imported only by otel_setup.spans_from_environment, once OTEL_* asks for traces: without the
extra, or without that configuration, nothing of OpenTelemetry is loaded.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._version import __version__
from .errors import StartupError
from .tracing import Incoming, Trace, attempt_trace

log = logging.getLogger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()


class OtelSpans:
    """tracing.Spans with an OpenTelemetry tracer."""

    def __init__(self, tracer: trace.Tracer, provider: TracerProvider | None) -> None:
        self._tracer = tracer
        self._provider = provider  # ours to shut down (flush), or None when it is the app's

    @classmethod
    def from_environment(cls) -> OtelSpans:
        """The process's tracer provider when one is set (`opentelemetry-instrument`, or the
        handlers' own code), else one built from the standard OTEL_* variables, and made the
        global one, so spans of instrumented handler code are exported the same way."""
        current = trace.get_tracer_provider()
        provider: TracerProvider | None = None
        if isinstance(current, trace.ProxyTracerProvider):
            # TracerProvider reads OTEL_TRACES_SAMPLER, Resource OTEL_SERVICE_NAME and
            # OTEL_RESOURCE_ATTRIBUTES, BatchSpanProcessor OTEL_BSP_*, the exporters theirs.
            provider = TracerProvider(resource=_resource())
            for exporter in _exporters():
                provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            current = provider
        return cls(current.get_tracer("spool", __version__), provider)

    def publish(self, queue: str, given: Incoming | None, count: int) -> PublishSpan:
        parent = None if given is None else _PROPAGATOR.extract(_carrier(given))
        attributes: dict[str, Any] = {
            "messaging.system": "spool",
            "messaging.operation.type": "send",
            "messaging.destination.name": queue,
        }
        if count != 1:
            attributes["messaging.batch.message_count"] = count
        span = self._tracer.start_span(
            f"publish {queue}", parent, SpanKind.PRODUCER, attributes, record_exception=False
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
        if "traceparent" not in carrier:  # a provider whose spans have no valid context
            return PublishSpan(span, given)
        return PublishSpan(span, Incoming(carrier["traceparent"], carrier.get("tracestate")))

    def attempt(self, queue: str, message_id: str, attempt: int, carried: Incoming) -> AttemptSpan:
        parent = _PROPAGATOR.extract(_carrier(carried))
        span = self._tracer.start_span(
            f"process {queue}",
            parent,
            SpanKind.CONSUMER,
            {
                "messaging.system": "spool",
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": message_id,
                "spool.attempt": attempt,
            },
            record_exception=False,
        )
        span_id = f"{span.get_span_context().span_id:016x}"
        # Current from here on in this task's context (and the copies the executor hands to
        # thread handlers and the handler's own task): instrumented handler code nests in it.
        token = otel_context.attach(trace.set_span_in_context(span))
        return AttemptSpan(
            span, attempt_trace(carried.traceparent, carried.tracestate, span_id), token
        )

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # exports what the batch processor still holds


class PublishSpan:
    __slots__ = ("_span", "carried")

    def __init__(self, span: trace.Span, carried: Incoming | None) -> None:
        self._span = span
        self.carried = carried

    def end(self, error: BaseException | None) -> None:
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self._span.end()


class AttemptSpan:
    __slots__ = ("_span", "_token", "trace")

    def __init__(self, span: trace.Span, trace_: Trace, token: object) -> None:
        self._span = span
        self._token = token
        self.trace = trace_

    def end(self, error: str | None) -> None:
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


def _carrier(given: Incoming) -> dict[str, str]:
    if given.tracestate is None:
        return {"traceparent": given.traceparent}
    return {"traceparent": given.traceparent, "tracestate": given.tracestate}


def _resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, as the SDK reads them; "spool" rather
    than the SDK's "unknown_service" when neither names the service."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "spool"}))
    return resource


def _exporters() -> list[SpanExporter]:
    """OTEL_TRACES_EXPORTER's exporters (default otlp), found as the SDK finds them: by their
    entry points, so any installed exporter package works."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    exporters: list[SpanExporter] = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name == "none":
            continue
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            hint = " (pip install opentelemetry-exporter-otlp)" if name.startswith("otlp") else ""
            raise StartupError(
                f"OTEL_TRACES_EXPORTER: no installed exporter is called {name!r}{hint}"
            )
        exporters.append(next(iter(found)).load()())
    return exporters
