"""Checks on config values that a field's type cannot state: HOST:PORT, the data paths; and
the words of a failure: a number's bounds, an enum's values, the key a typo meant, the
environment variable a bad value came from. Each failure is one line naming the key."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from .config_env import setting_path
from .errors import ConfigError


class DataPaths(Protocol):
    """What check_data_paths reads of config.BrokerSettings (a Protocol, so this module of
    value parsers needs nothing from config.py, which imports it)."""

    @property
    def backend(self) -> str: ...
    @property
    def snapshot_path(self) -> str: ...
    @property
    def sqlite_path(self) -> str: ...


PORT = re.compile(r"[0-9]{1,5}")
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_HOST_NAME = 253
SHOWN_VALUE_CHARS = 24
# A variable's value is shown longer: a path or a URL is useless cut at 24 characters.
SHOWN_VARIABLE_CHARS = 200
# Keys whose values may hold a password or a token: an error names their variable only.
SECRET_KEYS = re.compile(r"auth(\..*)?|broker\.amqp_url|queues\.[^.]+\.options(\..*)?")

MAX_COUNT = 1_000_000
RATE = re.compile(r"([1-9][0-9]{0,6})/([smh])")
# The default burst: a tenth of a second's tokens (at least one). An asyncio sleep is late
# by about a millisecond, so at high rates a burst of one would cap the rate below the limit.
DEFAULT_BURST_S = 0.1


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    window_s: int

    @property
    def per_s(self) -> float:
        return self.count / self.window_s

    def default_burst(self) -> int:
        return max(1, math.ceil(self.per_s * DEFAULT_BURST_S))

    def policy(self, name: str) -> str:
        """The RateLimit-Policy field (draft-ietf-httpapi-ratelimit-headers): quota q per
        window w seconds."""
        return f'"{name}";q={self.count};w={self.window_s}'


def parse_rate(text: str) -> Rate:
    """'100/s', '30/m', '5/h' → Rate; ValueError saying the form otherwise."""
    match = RATE.fullmatch(text)
    if match is None or int(match.group(1)) > MAX_COUNT:
        raise ValueError(
            f"expected COUNT/s, COUNT/m or COUNT/h with COUNT from 1 to {MAX_COUNT} "
            f"(e.g. '100/s'), got {text[:24]!r}"
        )
    unit = match.group(2)
    return Rate(int(match.group(1)), 1 if unit == "s" else 60 if unit == "m" else 3600)


def parse_bind(bind: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPV6]:PORT' → (host, port); ValueError saying what is wrong."""
    if bind.startswith("["):
        host, sep, port = bind[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPV6]:PORT, got {bind!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    else:
        if bind.count(":") != 1:
            raise ValueError(
                f"expected HOST:PORT with one ':' (an IPv6 host goes in brackets: "
                f"[::1]:8000), got {bind!r}"
            )
        host, _, port = bind.partition(":")
        check_host(host)
    if not PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got {port!r}")
    return host, int(port)


def check_host(host: str) -> None:
    labels = host.split(".")
    # A name whose last label is all digits can only be an IPv4 address (no top-level domain
    # is numeric), so 999.1.1.1 or 1.2.3 are refused instead of going to the resolver.
    if labels[-1].isascii() and labels[-1].isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
        return
    if len(host) > MAX_HOST_NAME or not all(HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host!r} is neither an IP address nor a host name")


def check_data_paths(broker: DataPaths, environ: Mapping[str, str] = os.environ) -> None:
    """The file the chosen backend writes: not a directory, and creatable or writable.

    What the start would find out only when it writes (the memory backend's snapshot is
    written at the graceful stop, so a bad path there would lose the queued messages)."""
    key = {"memory": "snapshot_path", "sqlite": "sqlite_path"}.get(broker.backend)
    if key is None:
        return  # amqp keeps nothing on this node's disk
    path: str = getattr(broker, key)
    try:
        check_writable_file(f"broker.{key}", path)
    except ConfigError as exc:
        raise name_the_variable(exc, environ) from None


def name_the_variable(exc: ConfigError, environ: Mapping[str, str]) -> ConfigError:
    """`exc`, naming the SPOOL_ variables that set its key (or a table it is in) and their
    values: environment variables override the file, so the value came from them."""
    key = exc.detail.partition(": ")[0]
    origins = []
    for name, value in sorted(environ.items()):
        keys = setting_path(name)
        path = ".".join(keys) if keys else ""
        if keys and (path == key or path.startswith(f"{key}.")):
            hidden = SECRET_KEYS.fullmatch(path)
            origins.append(
                f"{name} (value not shown)"
                if hidden
                else f"{name}={shown(value, SHOWN_VARIABLE_CHARS)}"
            )
    if not origins:
        return exc
    plural = "s" if len(origins) > 1 else ""
    return ConfigError(f"{exc.detail} (from environment variable{plural} {', '.join(origins)})")


def check_writable_file(key: str, value: str) -> None:
    path = Path(value).absolute()
    found, mode = nearest_existing(key, path)
    if found == path:
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{key}: {value!r} is a directory; give a file path in it")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{key}: {value!r} is not writable by this user")
        directory = path.parent
    elif not stat.S_ISDIR(mode):
        raise ConfigError(f"{key}: {value!r} cannot be created: {str(found)!r} is not a directory")
    else:
        directory = found
    # The file is replaced by rename (snapshot) or grows -wal/-shm/.lock siblings (sqlite):
    # either way the directory itself must take new files.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}: {value!r} cannot be written: {str(directory)!r} is not writable by this user"
        )


def nearest_existing(key: str, path: Path) -> tuple[Path, int]:
    """The path itself or its closest ancestor that exists, with its st_mode."""
    for candidate in (path, *path.parents):
        try:
            return candidate, os.stat(candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise ConfigError(f"{key}: cannot inspect {str(candidate)!r}: {exc.strerror}") from None
    raise ConfigError(f"{key}: no part of {str(path)!r} exists")  # '/' always does


def describe_value(kind: type[Any], where: str, data: Any) -> str | None:
    """What a bounded number or an enum at `where` ('a.b' inside `kind`) accepts, with the
    value given: 'expected an integer from 1 to 1000, got 3000000', "'threads' is not one
    of async, thread, process"; None for a field of another type."""
    found = field_at(kind, where, data)
    if found is None:
        return None
    field_type, value, owner, name = found
    if isinstance(field_type, msgspec.inspect.LiteralType):
        # In the order the Literal lists them (type_info sorts them).
        choices = typing.get_args(typing.get_type_hints(owner)[name])
        return f"{shown(value)} is not one of {', '.join(map(str, choices))}"
    if isinstance(field_type, msgspec.inspect.IntType):
        what = "an integer"
    elif isinstance(field_type, msgspec.inspect.FloatType):
        what = "a number"
    else:
        return None
    if field_type.ge is None or field_type.le is None:
        return None
    return (
        f"expected {what} from {show(field_type.ge)} to {show(field_type.le)}, got {shown(value)}"
    )


def field_at(kind: type[Any], where: str, data: Any) -> tuple[Any, Any, type[Any], str] | None:
    """The field at `where` inside `kind`: (its msgspec type info, the value given for it in
    `data`, the Struct that declares it, its name), or None when no field is there."""
    field_type: Any = msgspec.inspect.type_info(kind)
    value = data
    owner, name = kind, ""
    for name in where.split("."):
        if not isinstance(field_type, msgspec.inspect.StructType):
            return None
        fields = {f.name: f.type for f in field_type.fields}
        if name not in fields:
            return None
        owner, field_type = field_type.cls, fields[name]
        value = value.get(name) if isinstance(value, dict) else None
    return field_type, value, owner, name


def suggest_key(kind: type[Any], where: str) -> str | None:
    """The key of `kind` that an unknown `where` ('a.b') most likely misspells, if any."""
    parent, _, unknown = where.rpartition(".")
    struct: Any = msgspec.inspect.type_info(kind)
    if parent:
        found = field_at(kind, parent, None)
        struct = found[0] if found else None
    if not isinstance(struct, msgspec.inspect.StructType):
        return None
    near = difflib.get_close_matches(unknown, [f.name for f in struct.fields], n=1, cutoff=0.75)
    return near[0] if near else None


def shown(value: Any, limit: int = SHOWN_VALUE_CHARS) -> str:
    """A value as TOML writes it, cut short: an error line must stay one readable line."""
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    return text


def show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def describe_validation_error(message: str, prefix: str) -> str:
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
