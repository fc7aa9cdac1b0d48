"""What a first start says about its config: where it looked for the file, the allowed
values of an enum, the environment variable behind a bad value, and SPOOL_* variables that
set nothing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service.config import load_settings
from service.config_values import check_data_paths
from service.errors import ConfigError

from .conftest import Server, toml_config
from .test_cli import one_line_failure, run

QUEUE = '[queues.q]\nhandler = "tests.handlers:echo"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def config_error(path: Path | None, environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)
    detail = caught.value.detail
    assert "\n" not in detail
    return detail


def run_in(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_config_file_says_where_it_looked_and_how_to_pass_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    detail = config_error(None, {})
    assert detail.startswith("no config file found")
    assert str(tmp_path / "config.toml") in detail
    assert "--config" in detail and "SPOOL_CONFIG" in detail
    assert "SPOOL_CONFIG is not set" in detail
    assert "SPOOL_CONFIG is empty" in config_error(None, {"SPOOL_CONFIG": ""})


def test_a_start_in_a_directory_without_config_toml_says_so(tmp_path: Path) -> None:
    for command in (["check-config"], ["serve"], []):
        result = run_in(tmp_path, *command)
        one_line_failure(result, "no config file found", str(tmp_path / "config.toml"))
        assert "--config" in result.stderr and "SPOOL_CONFIG" in result.stderr


def test_queues_from_the_environment_alone_need_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={"SPOOL_QUEUES__Q__HANDLER": "tests.handlers:echo"})
    assert set(settings.queues) == {"q"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            QUEUE + "mode = 'threads'\n",
            "queues.q.mode: 'threads' is not one of async, thread, process",
        ),
        (QUEUE + "mode = 3\n", "queues.q.mode: 3 is not one of async, thread, process"),
        (
            "[broker]\nbackend = 'redis'\n" + QUEUE,
            "broker.backend: 'redis' is not one of memory, sqlite, amqp",
        ),
        (
            "[broker]\nsqlite_synchronous = 'off'\n" + QUEUE,
            "broker.sqlite_synchronous: 'off' is not one of full, normal",
        ),
        (
            "[log]\nlevel = 'verbose'\n" + QUEUE,
            "log.level: 'verbose' is not one of debug, info, warning, error, critical",
        ),
        ("[log]\nformat = 'xml'\n" + QUEUE, "log.format: 'xml' is not one of text, json"),
    ],
)
def test_an_enum_error_lists_the_allowed_values(tmp_path: Path, text: str, expected: str) -> None:
    assert config_error(write(tmp_path, text), {}) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nbnd = '1'\n" + QUEUE, "server.bnd: unknown key; did you mean 'bind'?"),
        (
            QUEUE + "concurency = 2\n",
            "queues.q.concurency: unknown key; did you mean 'concurrency'?",
        ),
        ("[servr]\nbind = '1'\n" + QUEUE, "servr: unknown key; did you mean 'server'?"),
        ("[server]\nzzz = 1\n" + QUEUE, "server.zzz: unknown key"),
    ],
)
def test_an_unknown_key_suggests_the_near_one(tmp_path: Path, text: str, expected: str) -> None:
    assert config_error(write(tmp_path, text), {}) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"SPOOL_EXECUTOR__THREADS": "0"},
            "executor.threads: expected an integer from 1 to 256, got 0 "
            "(from environment variable SPOOL_EXECUTOR__THREADS='0')",
        ),
        (
            {"SPOOL_BROKER__BACKEND": "redis"},
            "broker.backend: 'redis' is not one of memory, sqlite, amqp "
            "(from environment variable SPOOL_BROKER__BACKEND='redis')",
        ),
        (
            {"SPOOL_SERVER__BIND": "nohost"},
            "server.bind: expected HOST:PORT with one ':' (an IPv6 host goes in brackets: "
            "[::1]:8000), got 'nohost' (from environment variable SPOOL_SERVER__BIND='nohost')",
        ),
        (
            {"SPOOL_SERVR__BIND": "0.0.0.0:1"},
            "servr: unknown key; did you mean 'server'? "
            "(from environment variable SPOOL_SERVR__BIND='0.0.0.0:1')",
        ),
        (
            {"SPOOL_QUEUES__Q__MODE": "fork"},
            "queues.q.mode: 'fork' is not one of async, thread, process "
            "(from environment variable SPOOL_QUEUES__Q__MODE='fork')",
        ),
    ],
)
def test_a_bad_value_from_the_environment_names_the_variable_and_its_value(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    assert config_error(write(tmp_path, QUEUE), environ) == expected


def test_a_secret_from_the_environment_is_named_but_not_shown(tmp_path: Path) -> None:
    detail = config_error(write(tmp_path, QUEUE), {"SPOOL_AUTH__TOKENS": "s3cret"})
    assert "SPOOL_AUTH__TOKENS" in detail
    assert "s3cret" not in detail


def test_a_bad_data_path_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    environ = {"SPOOL_BROKER__SNAPSHOT_PATH": str(tmp_path)}
    settings = load_settings(write(tmp_path, QUEUE), environ=environ)
    with pytest.raises(ConfigError) as caught:
        check_data_paths(settings.broker, environ)
    assert caught.value.detail == (
        f"broker.snapshot_path: {str(tmp_path)!r} is a directory; give a file path in it "
        f"(from environment variable SPOOL_BROKER__SNAPSHOT_PATH={str(tmp_path)!r})"
    )


def warnings_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, environ: dict[str, str]
) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.config"):
        load_settings(write(tmp_path, QUEUE), environ=environ)
    return [r.getMessage() for r in caplog.records if r.name == "service.config"]


def test_a_spool_variable_that_sets_nothing_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert warnings_for(tmp_path, caplog, {"SPOOL_SERVER_BIND": "0.0.0.0:9000"}) == [
        "environment variable SPOOL_SERVER_BIND matches no Spool setting and is ignored; "
        "did you mean SPOOL_SERVER__BIND?"
    ]
    assert warnings_for(tmp_path, caplog, {"SPOOL_CONFIG_PATH": "x.toml"}) == [
        "environment variable SPOOL_CONFIG_PATH matches no Spool setting and is ignored; "
        "did you mean SPOOL_CONFIG?"
    ]
    (far,) = warnings_for(tmp_path, caplog, {"SPOOL_ZZZ": "1"})
    assert far.startswith("environment variable SPOOL_ZZZ matches no Spool setting")
    assert "did you mean" not in far
    assert "SPOOL_SECTION__KEY" in far


def test_the_variables_spool_reads_are_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "SPOOL_CONFIG": "c.toml",
        "SPOOL_URL": "http://127.0.0.1:8000",
        "SPOOL_TOKEN": "t",
        "SPOOL_SERVER__BIND": "127.0.0.1:9000",
        "SPOOL_QUEUES__Q__CONCURRENCY": "2",
        "SPOOL_QUEUES__NEW__HANDLER": "tests.handlers:echo",
    }
    assert warnings_for(tmp_path, caplog, environ) == []


def test_check_config_and_serve_warn_about_a_variable_that_sets_nothing(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    config = write(tmp_path, QUEUE)
    result = run("check-config", "--config", str(config), env={"SPOOL_SERVER_BIND": "0.0.0.0:1"})
    assert result.returncode == 0, result.stderr
    assert "SPOOL_SERVER_BIND matches no Spool setting" in result.stderr
    assert "did you mean SPOOL_SERVER__BIND?" in result.stderr
    server = server_factory(toml_config(tmp_path, QUEUE), env={"SPOOL_SERVER_BIND": "0.0.0.0:1"})
    server.start()
    assert "did you mean SPOOL_SERVER__BIND?" in server.log()
    assert server.stop() == 0


def test_a_misspelt_variable_is_warned_about_before_the_error_it_causes(tmp_path: Path) -> None:
    """A queue defined only by misspelt variables: the start fails for want of a config,
    and the warning names the variable that would have defined the queue."""
    result = run_in(tmp_path, "check-config", env={"SPOOL_QUEUES_JOBS_HANDLER": "m:f"})
    assert result.returncode == 2
    warning, error = result.stderr.splitlines()
    assert warning == (
        "environment variable SPOOL_QUEUES_JOBS_HANDLER matches no Spool setting and is "
        "ignored; did you mean SPOOL_QUEUES__JOBS__HANDLER?"
    )
    assert error.startswith("spool: no config file found")
