"""python -m service publish|get|queues|dead|redrive|pause|resume|schedules: the client from a shell.

Tables for people, `--json` for scripts. The server is `--url` or $SPOOL_URL (default
http://127.0.0.1:8000), the token `--token` or $SPOOL_TOKEN.

Exit codes (scripts can branch on them):
  0  done (publish --wait: the message succeeded)
  1  publish --wait: the message failed or was cancelled
  2  usage, or the server rejected the request as invalid (400, 409, 413, 415, 422)
  3  not found: unknown queue or message
  4  unauthorized or forbidden (401, 403)
  5  busy: queue full (429) or unavailable (503) once the retries are spent; try later
  6  the server could not be reached, or answered with an unexpected error
  7  publish --wait: the time ran out before the message was final
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO, TypeVar

import msgspec

from .client import (
    Busy,
    Client,
    ClientError,
    ConnectionFailed,
    DeadPage,
    Forbidden,
    Message,
    NotFound,
    QueueInfo,
    Redriven,
    Schedule,
    Unauthorized,
)
from .model import rfc3339

T = TypeVar("T")

COMMANDS = (
    "publish",
    "get",
    "queues",
    "dead",
    "redrive",
    "pause",
    "resume",
    "schedules",
    "pause-schedule",
    "resume-schedule",
)

OK, MESSAGE_FAILED, USAGE, NOT_FOUND, DENIED, BUSY, UNREACHABLE, TIMED_OUT = range(8)


def parser() -> argparse.ArgumentParser:
    first, _, rest = (__doc__ or "").partition("\n")
    root = argparse.ArgumentParser(
        prog="python -m service",
        description=first,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the server (default: $SPOOL_URL or http://127.0.0.1:8000)")
    common.add_argument("--token", help="bearer token (default: $SPOOL_TOKEN)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
    common.add_argument(
        "--retries", type=int, default=3, help="429/503 answers to wait out (default 3)"
    )
    sub = root.add_subparsers(dest="command", required=True)
    publish = sub.add_parser("publish", parents=[common], help="publish one message")
    publish.add_argument("queue")
    publish.add_argument(
        "body",
        help="the body: JSON, or a bare word sent as a string (hello); '-' reads JSON from stdin",
    )
    publish.add_argument("--wait", type=float, metavar="S", help="wait up to S s for the end")
    publish.add_argument("--delay", type=float, metavar="S", help="run it no sooner than in S s")
    publish.add_argument("--priority", type=int, help="0-9, higher first")
    publish.add_argument("--key", help="idempotency key (default: one is made)")
    sub.add_parser("get", parents=[common], help="a message by id").add_argument("id")
    sub.add_parser("queues", parents=[common], help="every queue with its figures")
    dead = sub.add_parser("dead", parents=[common], help="a queue's dead letters, newest first")
    dead.add_argument("queue")
    dead.add_argument("--limit", type=int, default=50)
    dead.add_argument("--cursor")
    redrive = sub.add_parser("redrive", parents=[common], help="put dead letters back")
    redrive.add_argument("queue")
    redrive.add_argument("ids", nargs="*", help="dead letters to redrive (default: all)")
    sub.add_parser("pause", parents=[common], help="stop handing out messages").add_argument(
        "queue"
    )
    sub.add_parser("resume", parents=[common], help="hand out messages again").add_argument("queue")
    sub.add_parser("schedules", parents=[common], help="every schedule: last and next run")
    sub.add_parser(
        "pause-schedule", parents=[common], help="stop publishing a schedule's ticks"
    ).add_argument("schedule")
    sub.add_parser(
        "resume-schedule", parents=[common], help="publish a schedule's ticks again"
    ).add_argument("schedule")
    return root


def main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    body: Any = None
    if args.command == "publish":
        try:
            body = read_body(args.body)
        except msgspec.DecodeError as exc:
            print(
                f"spool: the body is not valid JSON ({exc}); a body that starts with "
                f'{{, [ or " must be JSON, a bare word is sent as a string',
                file=err,
            )
            return USAGE
    try:
        with Client(
            args.url, token=args.token, timeout=args.timeout, retries=args.retries
        ) as client:
            return run(client, args, body, out)
    except ClientError as exc:
        print(f"spool: {exc.detail}", file=err)
        return exit_code(exc)


def read_body(argument: str) -> Any:
    """The body to publish: the argument as JSON (`-`: stdin's JSON), or a bare word as the
    string it is, so `publish default hello` needs no quotes within quotes. What starts as
    JSON must be JSON: a typo in an object is an error, not a string sent by surprise."""
    if argument == "-":
        return msgspec.json.decode(sys.stdin.read())
    try:
        return msgspec.json.decode(argument)
    except msgspec.DecodeError:
        if argument.lstrip()[:1] in ("{", "[", '"'):
            raise
        return argument


def exit_code(exc: ClientError) -> int:
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, Unauthorized | Forbidden):
        return DENIED
    if isinstance(exc, Busy):
        return BUSY
    if isinstance(exc, ConnectionFailed) or exc.status >= 500 or exc.status == 0:
        return UNREACHABLE
    return USAGE


def run(client: Client, args: argparse.Namespace, body: Any, out: TextIO) -> int:
    def show(value: T, as_table: Callable[[T], str]) -> None:
        if args.json:
            print(msgspec.json.format(msgspec.json.encode(as_api_writes(value))).decode(), file=out)
        else:
            print(as_table(value), file=out)

    if args.command == "publish":
        message = client.publish(
            args.queue, body, delay_s=args.delay, priority=args.priority, idempotency_key=args.key
        )
        if args.wait is None:
            show(message, message_table)
            return OK
        message = client.wait(message.id, timeout=args.wait)
        show(message, message_table)
        if not message.final:
            return TIMED_OUT
        return OK if message.status == "succeeded" else MESSAGE_FAILED
    if args.command == "get":
        show(client.get(args.id), message_table)
    elif args.command == "queues":
        show(client.queues(), queues_table)
    elif args.command == "dead":
        show(client.dead(args.queue, limit=args.limit, cursor=args.cursor), dead_table)
    elif args.command == "redrive":
        done = client.redrive(args.queue, args.ids or None)
        show(done, redriven_text)
    elif args.command in ("pause", "resume"):
        action = client.pause if args.command == "pause" else client.resume
        show(action(args.queue), lambda q: queues_table([q]))
    elif args.command == "schedules":
        show(client.schedules(), schedules_table)
    elif args.command in ("pause-schedule", "resume-schedule"):
        change = (
            client.pause_schedule if args.command == "pause-schedule" else client.resume_schedule
        )
        show(change(args.schedule), lambda found: schedules_table([found]))
    return OK


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
    headers += ["DEAD", "PUBLISHED", "SUCCEEDED", "FAILED"]
    rows = [
        (
            q.name,
            "yes" if q.paused else "no",
            q.consumers,
            *(q.depth.scheduled, q.depth.queued, q.depth.running, q.depth.retrying, q.depth.dead),
            *(q.counts.published, q.counts.succeeded, q.counts.failed),
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
        ("body", msgspec.json.encode(m.body).decode()),
    ]
    if m.result is not None:
        rows.append(("result", msgspec.json.encode(m.result).decode()))
    if m.error is not None:
        rows.append(("error", f"{m.error.type}: {m.error.message}"))
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
    """A timestamp as the API writes it (model.rfc3339: milliseconds, Z), or '-'."""
    return rfc3339(None if value is None else value.timestamp()) or "-"


def as_api_writes(value: object) -> Any:
    """`value` as JSON-ready builtins, its timestamps written as the API writes them: the
    client reads them as datetimes, which msgspec would write with microseconds."""
    return _api_times(msgspec.to_builtins(value, builtin_types=(datetime,)))


def _api_times(value: Any) -> Any:
    if isinstance(value, datetime):
        return when_text(value)
    if isinstance(value, dict):
        return {key: _api_times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_api_times(item) for item in value]
    return value
