"""Settings: parsed once from config.toml plus SPOOL_* environment overrides, then frozen.

Every section is a frozen msgspec Struct rather than a dataclass: msgspec validates types,
bounds and unknown keys in one pass and reports the path of the bad value, which is what
turns a typo into one clear line at start instead of a surprise at run time.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from .config_env import ENV_PREFIX, apply_env_overrides, setting_path, unused_variables
from .config_schedules import ScheduleSettings, read_schedules
from .config_values import (
    describe_validation_error,
    describe_value,
    name_the_variable,
    parse_bind,
    parse_rate,
    suggest_key,
)
from .errors import ConfigError
from .model import MAX_EXPIRY_S

QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# What the command line reads when neither --config nor SPOOL_CONFIG names a file (cli.py).
DEFAULT_CONFIG_FILE = "config.toml"
_T = TypeVar("_T")
log = logging.getLogger(__name__)

# The largest config file read: a settings file is a few KiB; /dev/zero is not one.
MAX_CONFIG_BYTES = 1_048_576
# Every numeric key has both bounds (README lists them): a value past them cannot work on a
# small machine or is not one an operator could want, and both bounds together refuse NaN
# and ±inf. Consumers are asyncio tasks, ~1.6 KB each (10 000 of them measured at +16 MB
# RSS), cheap one by one but not by the million (3 000 000 ended in a MemoryError); past
# MAX_CONSUMERS in all they only cost memory, as no handler pool runs that many at once.
MAX_CONSUMERS = 10_000
DAY_S = 86_400


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerSettings(_Section, frozen=True):
    bind: str = "0.0.0.0:8000"
    # An hour of draining is past any orchestrator's stop timeout already.
    graceful_timeout_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 8.0
    # A body is held whole, and parsed, in memory: 64 MiB per request is plenty; below 1 KiB
    # not even a small batch fits.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 2**20)] = 1_048_576
    # One answer carries every message of the batch: 10 000 keeps it a few MiB.
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    # A client that takes no bytes of an answer for this long is disconnected
    # (connections.py); an hour is past any reason to hold a connection that moves nothing.
    send_timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 10.0

    @property
    def host(self) -> str:
        return parse_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return parse_bind(self.bind)[1]


class BrokerSettings(_Section, frozen=True):
    backend: Literal["memory", "sqlite", "amqp"] = "memory"
    snapshot_path: str = "data/snapshot.jsonl"
    sqlite_path: str = "data/spool.db"
    sqlite_synchronous: Literal["full", "normal"] = "full"
    amqp_url: str = "amqp://guest:guest@localhost:5672/"


class ExecutorSettings(_Section, frozen=True):
    # Threads share one GIL: past a few hundred they add only stacks (8 MiB of address space
    # each) and switching, whatever the handlers wait on.
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    # Each worker is a whole interpreter (~30 MB): 64 is more cores than a Spool node has.
    processes: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    # sys.setswitchinterval: how long a thread may hold the GIL while another waits. Python's
    # 5 ms lets CPU-bound thread handlers keep the event loop waiting; 1 ms keeps it answering.
    # Below 0.1 ms the threads spend their time handing the GIL around.
    switch_interval_ms: Annotated[float, msgspec.Meta(ge=0.1, le=100)] = 1.0


class ResultsSettings(_Section, frozen=True):
    # Expiry is swept once a second, so a shorter life is not kept; a year (366 days, the
    # longest delay) is the most anyone could want to read a result back.
    ttl_s: Annotated[float, msgspec.Meta(ge=1, le=366 * DAY_S)] = 3600.0
    # Held in memory (and as many dead letters per queue), as max_size's messages are.
    max_entries: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000


class HealthSettings(_Section, frozen=True):
    # The lag is sampled every 250 ms and a quiet loop shows a few ms: below 10 ms /readyz
    # would flap; past a minute it would never fail.
    max_loop_lag_ms: Annotated[float, msgspec.Meta(ge=10, le=60_000)] = 250.0


class LogSettings(_Section, frozen=True):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"


class AuthSettings(_Section, frozen=True):
    tokens: list[str] = msgspec.field(default_factory=list)
    public_metrics: bool = False


class QueueSettings(_Section, frozen=True):
    handler: str
    mode: Literal["async", "thread", "process"] = "thread"
    # Consumer tasks; RabbitMQ's prefetch takes the same number (at most 65535). A thousand
    # handlers at once is far past what one node's pools or a downstream service take.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 4
    # Waiting messages are held in memory, ~324 B for a small one (README, B8): ten million
    # take over 3 GB, as much as a small machine has.
    max_size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 10_000
    # The backoff doubles per failure: 100 retries already wait out any cap.
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    retry_backoff_s: Annotated[float, msgspec.Meta(ge=0, le=DAY_S)] = 1.0
    retry_backoff_max_s: Annotated[float, msgspec.Meta(ge=0, le=DAY_S)] = 60.0
    # Below 10 ms an attempt times out before a thread or process even takes it up.
    timeout_s: Annotated[float, msgspec.Meta(ge=0.01, le=DAY_S)] = 30.0
    # "100/s", "30/m" or "5/h" (ratelimit.parse_rate): messages started per window, all
    # nodes together. None: no limit, and the consumers pay nothing for it.
    rate_limit: str | None = None
    # Tokens the bucket holds when full; None: a tenth of a second's worth (at least 1).
    rate_limit_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    # The expiry of a message whose envelope sets none (0: none), counted from publish.
    # TOML has no null, hence 0 for "none"; the bound is the envelope's (model.MAX_EXPIRY_S).
    expires_in_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_EXPIRY_S)] = 0.0
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class Settings(_Section, frozen=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    broker: BrokerSettings = msgspec.field(default_factory=BrokerSettings)
    executor: ExecutorSettings = msgspec.field(default_factory=ExecutorSettings)
    results: ResultsSettings = msgspec.field(default_factory=ResultsSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    queues: dict[str, QueueSettings] = msgspec.field(default_factory=dict)
    schedules: dict[str, ScheduleSettings] = msgspec.field(default_factory=dict)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), apply SPOOL_* overrides, validate, freeze. A SPOOL_
    variable that sets nothing is logged as a warning (before logging is set up, Python
    writes it to stderr as it is)."""
    environ = os.environ if environ is None else environ
    raw = {} if path is None else read_config_file(str(path))
    # Before any error: a misspelt variable may be the very cause of it.
    for warning in unused_variables(environ, setting_variables(raw, environ)):
        log.warning("%s", warning)
    try:
        apply_env_overrides(raw, environ)
        if path is None and not raw.get("queues"):
            # Without a file nothing defines a queue: what is missing is the file.
            raise ConfigError(no_config_file(environ))
        return settings_from_dict(raw)
    except ConfigError as exc:
        raise name_the_variable(exc, environ) from None


def no_config_file(environ: Mapping[str, str]) -> str:
    """Where the command line looked for a config file (cli.config_path), and how to give one."""
    given = environ.get("SPOOL_CONFIG")
    variable = "SPOOL_CONFIG is empty" if given == "" else "SPOOL_CONFIG is not set"
    return (
        f"no config file found: --config was not given, {variable}, and there is no "
        f"{os.path.abspath(DEFAULT_CONFIG_FILE)}; pass one with --config PATH or "
        f"SPOOL_CONFIG=PATH (README, Configuration: every key, and the shipped config.toml)"
    )


def setting_variables(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The environment variable of every key: each section's, and each queue's that the
    file or a variable defines."""
    queues = raw.get("queues")
    names = {str(name) for name in queues} if isinstance(queues, dict) else set()
    names.update(p[1] for p in map(setting_path, environ) if p and len(p) > 2 and p[0] == "queues")
    fields = [f.name for f in msgspec.structs.fields(QueueSettings)]
    # SPOOL_QUEUES_JOBS_HANDLER names no queue yet: guess one, to suggest its variable.
    for name in environ:
        rest = name.removeprefix(f"{ENV_PREFIX}QUEUES_").lower()
        if rest != name.lower() and "__" not in name:
            names.update(rest.removesuffix(f"_{f}") for f in fields if rest.endswith(f"_{f}"))
    keys = [
        f"{section.name}__{f.name}"
        for section in msgspec.structs.fields(Settings)
        if section.name not in ("queues", "schedules")
        for f in msgspec.structs.fields(section.type)
    ]
    keys += [f"queues__{queue}__{field}" for queue in names for field in fields]
    return [f"{ENV_PREFIX}{key.upper()}" for key in keys]


def read_config_file(path: str) -> dict[str, Any]:
    """The file's TOML, or ConfigError: one line naming the file, whatever went wrong."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path!r} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path!r} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path!r} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path!r} is not UTF-8 text: byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start}"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from None


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    queues_raw = raw.pop("queues", {})
    if not isinstance(queues_raw, dict):
        raise ConfigError("queues: expected a table of [queues.NAME] tables")
    schedules_raw = raw.pop("schedules", {})  # read once the queues they name are known
    settings = _convert(raw, Settings, prefix="")
    queues: dict[str, QueueSettings] = {}
    consumers = 0
    for name, table in queues_raw.items():
        if not QUEUE_NAME.fullmatch(name):
            raise ConfigError(f"queues.{name}: queue names must match {QUEUE_NAME.pattern}")
        if not isinstance(table, dict):
            raise ConfigError(f"queues.{name}: expected a table")
        queue = _convert(table, QueueSettings, prefix=f"queues.{name}")
        if queue.retry_backoff_max_s < queue.retry_backoff_s:
            raise ConfigError(
                f"queues.{name}.retry_backoff_max_s: must be >= retry_backoff_s "
                f"({queue.retry_backoff_s})"
            )
        if ":" not in queue.handler:
            raise ConfigError(f"queues.{name}.handler: expected 'module:function'")
        check_rate_limit(name, queue)
        queues[name] = queue
        consumers += queue.concurrency
        if consumers > MAX_CONSUMERS:
            raise ConfigError(
                f"queues.{name}.concurrency: the queues' consumers add up to {consumers} "
                f"with this one; at most {MAX_CONSUMERS} in all"
            )
    if not queues:
        raise ConfigError("queues: define at least one [queues.NAME] table with a handler")
    try:
        parse_bind(settings.server.bind)
    except ValueError as exc:
        raise ConfigError(f"server.bind: {exc}") from None
    schedules = read_schedules(schedules_raw, queues, settings.server.max_body_bytes, _convert)
    return msgspec.structs.replace(settings, queues=queues, schedules=schedules)


def check_rate_limit(name: str, queue: QueueSettings) -> None:
    if queue.rate_limit is not None:
        try:
            parse_rate(queue.rate_limit)
        except ValueError as exc:
            raise ConfigError(f"queues.{name}.rate_limit: {exc}") from None
    elif queue.rate_limit_burst is not None:
        raise ConfigError(f"queues.{name}.rate_limit_burst: set only with rate_limit")


def _convert(data: dict[str, Any], kind: type[_T], prefix: str) -> _T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        message = describe_validation_error(str(exc), prefix)
        key, _, text = message.partition(": ")
        where = key.removeprefix(prefix).lstrip(".")
        if text == "unknown key":
            near = suggest_key(kind, where)
            raise ConfigError(f"{message}; did you mean {near!r}?" if near else message) from None
        allowed = describe_value(kind, where, data)
        raise ConfigError(f"{key}: {allowed}" if allowed else message) from None
