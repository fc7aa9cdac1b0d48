"""`[schedules.NAME]`: a message published to a queue on a cron expression (scheduler.py).

Kept apart from config.py, which reads it: what a schedule's fields cannot state by their
types (an expression croniter reads, a zone of the IANA database, a configured queue, a
body that is JSON) is checked here, each failure one line naming the key."""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from typing import Annotated, Any

import msgspec

from .errors import ConfigError
from .schedules import Cron

# Used in idempotency keys and, on amqp, in RabbitMQ queue names: the queues' own rule.
SCHEDULE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# Each schedule is a timer on every node and, on amqp, two RabbitMQ queues: a thousand is
# far past any crontab a team keeps by hand.
MAX_SCHEDULES = 1000


class ScheduleSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cron: str
    queue: str
    timezone: str = "UTC"
    # Any TOML value that is JSON (a table, an array, a string, a number); null when absent.
    body: Any = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=9)] = 0
    # After downtime, run the latest tick missed (one at most); else wait for the next.
    catch_up: bool = False


def check_schedule(
    name: str, schedule: ScheduleSettings, queues: Container[str], max_body_bytes: int
) -> Cron:
    """The schedule's Cron, or ConfigError naming the key that is wrong."""
    key = f"schedules.{name}"
    if not SCHEDULE_NAME.fullmatch(name):
        raise ConfigError(f"{key}: schedule names must match {SCHEDULE_NAME.pattern}")
    if schedule.queue not in queues:
        raise ConfigError(f"{key}.queue: {schedule.queue!r} is not a configured queue")
    try:
        cron = Cron.parse(schedule.cron, "UTC")
    except ValueError as exc:
        raise ConfigError(f"{key}.cron: {exc}") from None
    try:
        cron = Cron.parse(schedule.cron, schedule.timezone)
    except ValueError as exc:
        raise ConfigError(f"{key}.timezone: {exc}") from None
    try:
        body = msgspec.json.encode(schedule.body)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.body: not a JSON value ({exc})") from None
    if len(body) > max_body_bytes:
        raise ConfigError(
            f"{key}.body: {len(body)} bytes as JSON, more than server.max_body_bytes "
            f"({max_body_bytes})"
        )
    return cron


def read_schedules(
    raw: Any,
    queues: Container[str],
    max_body_bytes: int,
    convert: Callable[[dict[str, Any], type[ScheduleSettings], str], ScheduleSettings],
) -> dict[str, ScheduleSettings]:
    """Every [schedules.NAME] table, converted and checked."""
    if not isinstance(raw, dict):
        raise ConfigError("schedules: expected a table of [schedules.NAME] tables")
    if len(raw) > MAX_SCHEDULES:
        raise ConfigError(f"schedules: {len(raw)} schedules; at most {MAX_SCHEDULES}")
    schedules = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"schedules.{name}: expected a table")
        schedule = convert(table, ScheduleSettings, f"schedules.{name}")
        check_schedule(name, schedule, queues, max_body_bytes)
        schedules[name] = schedule
    return schedules


def body_of(schedule: ScheduleSettings) -> bytes:
    return msgspec.json.encode(schedule.body)
