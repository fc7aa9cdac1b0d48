"""The client CLI's answers as text for people (client_cli.py; scripts use --json):
aligned tables, a message's fields one a line, timestamps as the API writes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from .client import DeadPage, Message, QueueInfo, Redriven, Schedule
from .timestamps import rfc3339


def redriven_text(done: Redriven) -> str:
    skipped = f"; skipped (not dead letters): {' '.join(done.skipped)}" if done.skipped else ""
    return f"redriven {done.redriven}{skipped}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns two spaces apart, for people (scripts use --json)."""
    cells = [list(map(str, headers)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def queues_table(queues: Sequence[QueueInfo]) -> str:
    headers = ["QUEUE", "PAUSED", "CONSUMERS", "SCHEDULED", "QUEUED", "RUNNING", "RETRYING"]
    headers += ["DEAD", "PUBLISHED", "SUCCEEDED", "FAILED", "EXPIRED"]
    rows = [
        (
            q.name,
            "yes" if q.paused else "no",
            q.consumers,
            *(q.depth.scheduled, q.depth.queued, q.depth.running, q.depth.retrying, q.depth.dead),
            *(q.counts.published, q.counts.succeeded, q.counts.failed, q.counts.expired),
        )
        for q in queues
    ]
    return table(headers, rows)


def message_table(m: Message) -> str:
    rows: list[tuple[str, object]] = [
        ("id", m.id),
        ("queue", m.queue),
        ("status", m.status),
        ("attempts", m.attempts),
        ("priority", m.priority),
        ("created_at", when_text(m.created_at)),
        ("scheduled_for", when_text(m.scheduled_for)),
        ("started_at", when_text(m.started_at)),
        ("finished_at", when_text(m.finished_at)),
        ("expires_at", when_text(m.expires_at)),
        ("body", msgspec.json.encode(m.body).decode()),
    ]
    if m.result is not None:
        rows.append(("result", msgspec.json.encode(m.result).decode()))
    if m.error is not None:
        rows.append(("error", f"{m.error.type}: {m.error.message}"))
    if m.progress is not None:
        detail = (
            ""
            if m.progress.detail is None
            else " " + msgspec.json.encode(m.progress.detail).decode()
        )
        rows.append(("progress", f"{m.progress.fraction:.0%}{detail}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def dead_table(page: DeadPage) -> str:
    rows = []
    for m in page.messages:
        error_type, error_text = (m.error.type, m.error.message[:60]) if m.error else ("", "")
        rows.append((m.id, when_text(m.finished_at), m.attempts, error_type, error_text))
    text = table(("ID", "FAILED AT", "ATTEMPTS", "ERROR", "MESSAGE"), rows)
    return text + (f"\nmore: --cursor {page.next_cursor}" if page.next_cursor else "")


def when_text(value: datetime | None) -> str:
    """A timestamp as the API writes it (timestamps.rfc3339: milliseconds, Z), or '-'."""
    return rfc3339(None if value is None else value.timestamp()) or "-"


def schedules_table(schedules: Sequence[Schedule]) -> str:
    headers = ["SCHEDULE", "CRON", "TIMEZONE", "QUEUE", "PAUSED", "LAST RUN", "NEXT RUN"]
    rows = [
        (
            f.name,
            f.cron,
            f.timezone,
            f.queue,
            "yes" if f.paused else "no",
            when_text(f.last_run),
            when_text(f.next_run),
        )
        for f in schedules
    ]
    return table(headers, rows)
