"""Settings: parsed once from config.toml plus SPOOL_* environment overrides, then frozen.

Every section is a frozen msgspec Struct rather than a dataclass: msgspec validates types,
bounds and unknown keys in one pass and reports the path of the bad value, which is what
turns a typo into one clear line at start instead of a surprise at run time.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from .errors import ConfigError

QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
ENV_PREFIX = "SPOOL_"
_T = TypeVar("_T")

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerSettings(_Section, frozen=True):
    bind: str = "0.0.0.0:8000"
    graceful_timeout_s: NonNegativeFloat = 8.0
    max_body_bytes: PositiveInt = 1_048_576
    max_batch: PositiveInt = 1000

    @property
    def host(self) -> str:
        return split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return split_bind(self.bind)[1]


class BrokerSettings(_Section, frozen=True):
    backend: Literal["memory", "sqlite", "amqp"] = "memory"
    snapshot_path: str = "data/snapshot.jsonl"
    sqlite_path: str = "data/spool.db"
    sqlite_synchronous: Literal["full", "normal"] = "full"
    amqp_url: str = "amqp://guest:guest@localhost:5672/"


class ExecutorSettings(_Section, frozen=True):
    threads: PositiveInt = 8
    processes: PositiveInt = 2
    # sys.setswitchinterval: how long a thread may hold the GIL while another waits. Python's
    # 5 ms lets CPU-bound thread handlers keep the event loop waiting; 1 ms keeps it answering.
    switch_interval_ms: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.0


class ResultsSettings(_Section, frozen=True):
    ttl_s: PositiveFloat = 3600.0
    max_entries: PositiveInt = 100_000


class HealthSettings(_Section, frozen=True):
    max_loop_lag_ms: PositiveFloat = 250.0


class LogSettings(_Section, frozen=True):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"


class AuthSettings(_Section, frozen=True):
    tokens: list[str] = msgspec.field(default_factory=list)
    public_metrics: bool = False


class QueueSettings(_Section, frozen=True):
    handler: str
    mode: Literal["async", "thread", "process"] = "thread"
    concurrency: PositiveInt = 4
    max_size: PositiveInt = 10_000
    max_retries: NonNegativeInt = 3
    retry_backoff_s: NonNegativeFloat = 1.0
    retry_backoff_max_s: NonNegativeFloat = 60.0
    timeout_s: PositiveFloat = 30.0
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


def split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), apply SPOOL_* overrides, validate, freeze."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    apply_env_overrides(raw, environ)
    return settings_from_dict(raw)


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue  # SPOOL_CONFIG and friends are not settings
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if any(not key for key in keys):
            raise ConfigError(f"environment variable {name}: empty key between '__'")
        table = raw
        for key in keys[:-1]:
            child = table.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(keys)}: {key!r} is not a table (from {name})")
            table = child
        table[keys[-1]] = parse_env_value(value)


def parse_env_value(value: str) -> Any:
    """A TOML value where the text parses as one (number, boolean, array), else the string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    queues_raw = raw.pop("queues", {})
    if not isinstance(queues_raw, dict):
        raise ConfigError("queues: expected a table of [queues.NAME] tables")
    settings = _convert(raw, Settings, prefix="")
    queues: dict[str, QueueSettings] = {}
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
        queues[name] = queue
    if not queues:
        raise ConfigError("queues: define at least one [queues.NAME] table with a handler")
    try:
        split_bind(settings.server.bind)
    except ValueError as exc:
        raise ConfigError(f"server.bind: {exc}") from None
    return msgspec.structs.replace(settings, queues=queues)


def _convert(data: dict[str, Any], kind: type[_T], prefix: str) -> _T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(str(exc), prefix)) from None


def _describe(message: str, prefix: str) -> str:
    """'Expected `int` >= 1 - at `$.x.y`' → 'prefix.x.y: expected `int` >= 1'."""
    text, _, where = message.rpartition(" - at `")
    if not text:
        text, where = message, ""
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", text)
    if unknown:
        path = ".".join(p for p in (path, unknown.group(1)) if p)
        text = "unknown key"
    missing = re.match(r"Object missing required field `([^`]+)`", text)
    if missing:
        path = ".".join(p for p in (path, missing.group(1)) if p)
        text = "required key is missing"
    dotted = ".".join(p for p in (prefix, path) if p) or "config"
    return f"{dotted}: {text[:1].lower()}{text[1:]}"
