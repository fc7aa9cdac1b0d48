"""Every numeric key has documented bounds; values past them, NaN, ±inf and bad binds are
refused in one line naming the key, wherever the value came from (file or environment)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from service.config import QueueSettings, Settings, load_settings
from service.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
QUEUE = '[queues.q]\nhandler = "tests.handlers:echo"\n'

# The contract, as README.md states it: dotted key → (lowest, highest) accepted, inclusive.
BOUNDS: dict[str, tuple[float, float]] = {
    "server.graceful_timeout_s": (0, 3600),
    "server.max_body_bytes": (1024, 67_108_864),
    "server.max_batch": (1, 10_000),
    "server.send_timeout_s": (0.1, 3600),
    "executor.threads": (1, 256),
    "executor.processes": (1, 64),
    "executor.switch_interval_ms": (0.1, 100),
    "results.ttl_s": (1, 31_622_400),
    "results.max_entries": (1, 10_000_000),
    "health.max_loop_lag_ms": (10, 60_000),
    "queues.q.concurrency": (1, 1000),
    "queues.q.max_size": (1, 10_000_000),
    "queues.q.max_retries": (0, 100),
    "queues.q.retry_backoff_s": (0, 86_400),
    "queues.q.retry_backoff_max_s": (0, 86_400),
    "queues.q.timeout_s": (0.01, 86_400),
    "queues.q.expires_in_s": (0, 30 * 86_400),
}
FLOAT_KEYS = [k for k in BOUNDS if k.endswith(("_s", "_ms"))]
INT_KEYS = [k for k in BOUNDS if k not in FLOAT_KEYS]


def numeric_fields(kind: type[Any], prefix: str) -> dict[str, msgspec.inspect.Type]:
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    found: dict[str, msgspec.inspect.Type] = {}
    for field in info.fields:
        key = f"{prefix}{field.name}"
        if isinstance(field.type, msgspec.inspect.StructType):
            found.update(numeric_fields(field.type.cls, f"{key}."))
        elif isinstance(field.type, msgspec.inspect.IntType | msgspec.inspect.FloatType):
            found[key] = field.type
    return found


def toml_number(value: int | float) -> str:  # huge ints included: isnan() would overflow
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def config_with(key: str, value: float) -> str:
    """A config setting `key` to `value`, plus what its sibling must hold to be consistent."""
    section, _, name = key.rpartition(".")
    lines = {name: toml_number(value)}
    if name == "retry_backoff_s":  # retry_backoff_max_s must stay >= it
        lines["retry_backoff_max_s"] = "86400"
    if name == "retry_backoff_max_s":
        lines["retry_backoff_s"] = "0"
    body = "".join(f"{k} = {v}\n" for k, v in lines.items())
    if section == "queues.q":
        return QUEUE + body
    return f"[{section}]\n{body}" + QUEUE


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path, environ=environ or {})


def refused(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    detail = caught.value.detail
    assert "\n" not in detail
    return detail


def show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def test_every_numeric_key_has_both_bounds_and_is_listed_here() -> None:
    found = numeric_fields(Settings, "")
    found.update(numeric_fields(QueueSettings, "queues.q."))
    assert set(found) == set(BOUNDS)
    for key, kind in found.items():
        assert isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType)
        assert (kind.ge, kind.le) == BOUNDS[key], key


@pytest.mark.parametrize("key", list(BOUNDS))
def test_each_bound_is_accepted(tmp_path: Path, key: str) -> None:
    for value in BOUNDS[key]:
        settings = load(tmp_path, config_with(key, value))
        section, _, name = key.rpartition(".")
        table: Any = settings.queues["q"] if section == "queues.q" else getattr(settings, section)
        assert getattr(table, name) == value


def just_outside(key: str) -> list[float]:
    low, high = BOUNDS[key]
    if key in INT_KEYS:
        return [int(low) - 1, int(high) + 1]
    return [math.nextafter(low, -math.inf), math.nextafter(high, math.inf)]


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key in BOUNDS for value in just_outside(key)]
)
def test_just_outside_a_bound_is_refused_naming_the_key_and_its_bounds(
    tmp_path: Path, key: str, value: float
) -> None:
    detail = refused(tmp_path, config_with(key, value))
    low, high = BOUNDS[key]
    assert detail.startswith(f"{key}: ")
    assert f"from {show(low)} to {show(high)}" in detail


@pytest.mark.parametrize(
    ("key", "value"),
    [(key, v) for key in FLOAT_KEYS for v in (math.nan, math.inf, -math.inf)],
)
def test_nan_and_infinity_are_refused_for_every_float(
    tmp_path: Path, key: str, value: float
) -> None:
    assert refused(tmp_path, config_with(key, value)).startswith(f"{key}: ")
    env = {"SPOOL_" + key.upper().replace(".", "__"): toml_number(value)}
    assert refused(tmp_path, QUEUE, env).startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("key", "value"), [(key, v) for key in BOUNDS for v in (2**64, -(2**64), 10**400)]
)
def test_integers_past_2_to_the_64_are_refused(tmp_path: Path, key: str, value: int) -> None:
    detail = refused(tmp_path, config_with(key, value))
    assert detail.startswith(f"{key}: ")
    assert len(detail) < 200  # the value is shown, shortened


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SPOOL_QUEUES__Q__CONCURRENCY": "3000000"}, "queues.q.concurrency"),
        ({"SPOOL_EXECUTOR__THREADS": "1000000"}, "executor.threads"),
        ({"SPOOL_EXECUTOR__PROCESSES": "100000"}, "executor.processes"),
        ({"SPOOL_RESULTS__MAX_ENTRIES": "18446744073709551617"}, "results.max_entries"),
        ({"SPOOL_SERVER__GRACEFUL_TIMEOUT_S": "inf"}, "server.graceful_timeout_s"),
        ({"SPOOL_RESULTS__TTL_S": "1e-09"}, "results.ttl_s"),
        ({"SPOOL_QUEUES__Q__TIMEOUT_S": "nan"}, "queues.q.timeout_s"),
        ({"SPOOL_QUEUES__Q__CONCURRENCY": "true"}, "queues.q.concurrency"),
        ({"SPOOL_EXECUTOR__SWITCH_INTERVAL_MS": "1e-9"}, "executor.switch_interval_ms"),
    ],
)
def test_the_issues_values_are_refused_from_the_environment(
    tmp_path: Path, env: dict[str, str], key: str
) -> None:
    assert refused(tmp_path, QUEUE, env).startswith(f"{key}: ")


def test_consumers_across_all_queues_are_bounded(tmp_path: Path) -> None:
    queues = "".join(
        f'[queues.q{i}]\nhandler = "tests.handlers:echo"\nconcurrency = 1000\n' for i in range(10)
    )
    assert sum(q.concurrency for q in load(tmp_path, queues).queues.values()) == 10_000
    detail = refused(tmp_path, queues + '[queues.x]\nhandler = "tests.handlers:echo"\n')
    assert detail.startswith("queues.x.concurrency: ")
    assert "10000" in detail


@pytest.mark.parametrize(
    "bind",
    [
        "127.0.0.1:80:90",
        "999.1.1.1:8000",
        "1.2.3:8000",
        "0x7f.1:8000",
        "::1:8000",
        "[::1]8000",
        "[::1",
        "[::1]:",
        "[nothost]:8000",
        "[127.0.0.1]:8000",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:+80",
        "127.0.0.1:\uff18\uff10",  # fullwidth digits: str.isdigit() and int() take them
        "127.0.0.1:",
        ":8000",
        "bad_host!:8000",
        "-lead.example:8000",
        "a..b:8000",
        " 127.0.0.1:8000",
        "x" * 64 + ".example:8000",
        "unix:/tmp/spool.sock",
        "127.0.0.1:99999999999999999999999",
    ],
)
def test_bad_bind_is_refused_in_one_line(tmp_path: Path, bind: str) -> None:
    for detail in (
        refused(tmp_path, f"[server]\nbind = {bind!r}\n" + QUEUE),
        refused(tmp_path, QUEUE, {"SPOOL_SERVER__BIND": bind}),
    ):
        assert detail.startswith("server.bind: ")


@pytest.mark.parametrize(
    ("bind", "host", "port"),
    [
        ("0.0.0.0:8000", "0.0.0.0", 8000),
        ("127.0.0.1:1", "127.0.0.1", 1),
        ("localhost:65535", "localhost", 65535),
        ("spool-1.internal.example:80", "spool-1.internal.example", 80),
        ("[::]:8000", "::", 8000),
        ("[::1]:8000", "::1", 8000),
        ("[fe80::1%eth0]:8000", "fe80::1%eth0", 8000),
    ],
)
def test_good_bind_is_split_into_host_and_port(
    tmp_path: Path, bind: str, host: str, port: int
) -> None:
    server = load(tmp_path, f"[server]\nbind = {bind!r}\n" + QUEUE).server
    assert (server.host, server.port) == (host, port)


def readme_config_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z_.A-Z]+)` \|(.*)\|$", text, flags=re.MULTILINE)
    return {key.replace("NAME", "q"): rest for key, rest in rows}


@pytest.mark.parametrize("key", list(BOUNDS))
def test_readme_states_each_numeric_keys_bounds(key: str) -> None:
    low, high = BOUNDS[key]
    assert f"{show(low)}\N{EN DASH}{show(high)}" in readme_config_rows()[key]
