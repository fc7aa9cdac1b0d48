"""Checks on config values that a field's type cannot state: HOST:PORT, the data paths, and
the message for a number outside its bounds. Each failure is one line naming the key."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import Any, Protocol

import msgspec

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


def check_data_paths(broker: DataPaths) -> None:
    """The file the chosen backend writes: not a directory, and creatable or writable.

    What the start would find out only when it writes (the memory backend's snapshot is
    written at the graceful stop, so a bad path there would lose the queued messages)."""
    key = {"memory": "snapshot_path", "sqlite": "sqlite_path"}.get(broker.backend)
    if key is None:
        return  # amqp keeps nothing on this node's disk
    path: str = getattr(broker, key)
    check_writable_file(f"broker.{key}", path)


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


def describe_number(kind: type[Any], where: str, data: Any) -> str | None:
    """'expected an integer from 1 to 1000, got 3000000' for a bounded number field at
    `where` ('a.b' inside `kind`), or None when the field there is not one."""
    field_type: Any = msgspec.inspect.type_info(kind)
    value = data
    for name in where.split("."):
        if not isinstance(field_type, msgspec.inspect.StructType):
            return None
        fields = {f.name: f.type for f in field_type.fields}
        if name not in fields:
            return None
        field_type = fields[name]
        value = value.get(name) if isinstance(value, dict) else None
    if isinstance(field_type, msgspec.inspect.IntType):
        what = "an integer"
    elif isinstance(field_type, msgspec.inspect.FloatType):
        what = "a number"
    else:
        return None
    if field_type.ge is None or field_type.le is None:
        return None
    shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as TOML has it
    if len(shown) > SHOWN_VALUE_CHARS:
        shown = f"{shown[:SHOWN_VALUE_CHARS]}… ({len(shown)} characters)"
    return f"expected {what} from {show(field_type.ge)} to {show(field_type.le)}, got {shown}"


def show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))
