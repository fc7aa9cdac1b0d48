"""W3C Trace Context parsing (tracing.py), the log formatters' trace fields, and when
OpenTelemetry is switched on."""

from __future__ import annotations

import logging

import pytest

from service.logs import JsonFormatter, TextFormatter
from service.otel_setup import spans_from_environment
from service.tracing import (
    CURRENT,
    MAX_TRACESTATE,
    Incoming,
    attempt_trace,
    incoming,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (VALID, VALID),
        (f" {VALID}\t", VALID),  # optional whitespace around a header value
        (f"00-{TRACE_ID}-{PARENT_ID}-00", f"00-{TRACE_ID}-{PARENT_ID}-00"),
        (f"01-{TRACE_ID}-{PARENT_ID}-03", f"00-{TRACE_ID}-{PARENT_ID}-01"),  # unknown flags
        (f"01-{TRACE_ID}-{PARENT_ID}-01-later", f"00-{TRACE_ID}-{PARENT_ID}-01"),
        (f"01-{TRACE_ID}-{PARENT_ID}-01later", None),  # a later field starts with a dash
        (f"0-{TRACE_ID}-{PARENT_ID}-01", None),
        (f"00-{TRACE_ID}-{PARENT_ID}-1", None),
        (f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01", None),
        (f"00_{TRACE_ID}_{PARENT_ID}_01", None),
    ],
)
def test_traceparent_is_read_as_w3c_says(header: str, kept: str | None) -> None:
    found = incoming(header, None)
    assert (found.traceparent if found else None) == kept


def test_tracestate_is_kept_only_with_a_valid_traceparent_and_within_bounds() -> None:
    assert incoming(VALID, "a=1,b=2") == Incoming(VALID, "a=1,b=2")
    assert incoming("bad", "a=1") is None
    assert incoming(VALID, "x" * (MAX_TRACESTATE + 1)) == Incoming(VALID, None)
    assert incoming(VALID, "a=\x01") == Incoming(VALID, None)
    assert incoming(VALID, "  ") == Incoming(VALID, None)


def test_each_attempt_gets_a_span_of_its_own_under_the_publisher() -> None:
    first, second = attempt_trace(VALID, "a=1"), attempt_trace(VALID, "a=1")
    assert first.span_id != second.span_id
    assert first.parent_id == PARENT_ID and first.sampled
    assert first.traceparent == f"00-{TRACE_ID}-{first.span_id}-01"
    assert not attempt_trace(f"00-{TRACE_ID}-{PARENT_ID}-00", None).sampled


def test_log_lines_carry_the_current_attempts_ids_in_both_formats() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "hello", (), None)
    assert "trace_id" not in JsonFormatter().format(record)
    token = CURRENT.set(attempt_trace(VALID, None, "1111222233334444"))
    try:
        json_line = JsonFormatter().format(record)
        text_line = TextFormatter().format(record)
    finally:
        CURRENT.reset(token)
    assert f'"trace_id":"{TRACE_ID}","span_id":"1111222233334444"' in json_line
    assert text_line.endswith(f"hello [trace_id={TRACE_ID} span_id=1111222233334444]")


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_SERVICE_NAME": "x"},  # names the service, asks for nothing to be exported
    ],
)
def test_spans_are_off_unless_otel_variables_ask_for_them(environ: dict[str, str]) -> None:
    assert spans_from_environment(environ) is None
