"""python -m service publish|get|queues|dead|redrive|pause|resume|schedules: the client from a shell.

Tables for people, `--json` for scripts. The server is `--url` or $SPOOL_URL (default
http://127.0.0.1:8000), the token `--token` or $SPOOL_TOKEN.

Exit codes (scripts can branch on them):
  0  done (publish --wait: the message succeeded)
  1  publish --wait: the message failed, was cancelled or expired
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO, TypeVar

import msgspec

from .client import (
    Busy,
    Client,
    ClientError,
    ConnectionFailed,
    Forbidden,
    NotFound,
    Unauthorized,
)
from .client.plans import MAX_PUBLISH_WAIT_S
from .client_tables import (
    dead_table,
    message_table,
    queues_table,
    redriven_text,
    schedules_table,
    when_text,
)

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
    publish.add_argument(
        "--expires",
        type=float,
        metavar="S",
        help="not started within S s of now (a delay included), it is never run: expired",
    )
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
    show = Show(args.json, out)
    if args.command == "publish":
        return publish(client, args, body, show)
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


@dataclass(frozen=True)
class Show:
    """Prints an answer as the API's JSON (--json) or as a table for people."""

    as_json: bool
    out: TextIO

    def __call__(self, value: T, as_table: Callable[[T], str]) -> None:
        if self.as_json:
            text = msgspec.json.format(msgspec.json.encode(as_api_writes(value))).decode()
            print(text, file=self.out)
        else:
            print(as_table(value), file=self.out)


def publish(client: Client, args: argparse.Namespace, body: Any, show: Show) -> int:
    """`spool publish`, and with --wait the outcome's exit code."""
    # --wait S: the publish itself waits (Prefer: wait, at most 30 s on the server), and
    # only a longer S long-polls for the rest.
    started = time.monotonic()
    held = min(args.wait, MAX_PUBLISH_WAIT_S) if args.wait and args.wait > 0 else None
    message = client.publish(
        args.queue,
        body,
        delay_s=args.delay,
        priority=args.priority,
        idempotency_key=args.key,
        wait=held,
        expires_in_s=args.expires,
    )
    if args.wait is None:
        show(message, message_table)
        return OK
    left = args.wait - (time.monotonic() - started)
    if not message.final and left > 0:
        message = client.wait(message.id, timeout=left)
    show(message, message_table)
    if not message.final:
        return TIMED_OUT
    return OK if message.status == "succeeded" else MESSAGE_FAILED


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
