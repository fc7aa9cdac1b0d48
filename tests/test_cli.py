"""The command line as users run it: check-config, serve's start failures, healthcheck."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import ROOT, Server, toml_config


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_accepts_the_shipped_config() -> None:
    result = run("check-config")
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout


def test_check_config_names_the_bad_key_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[queues.q]\nhandler = "tests.handlers:echo"\nconcurrency = 0\n')
    result = run("check-config", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "queues.q.concurrency" in result.stderr


def test_unknown_handler_fails_the_start_with_a_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[queues.q]\nhandler = "tests.handlers:nope"\n')
    for command in ("check-config", "serve"):
        result = run(command, env={"SPOOL_CONFIG": str(config)})
        assert result.returncode == 2, result.stderr
        assert "queues.q.handler" in result.stderr
        assert "Traceback" not in result.stderr


def test_sync_handler_in_async_mode_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[queues.q]\nhandler = "tests.handlers:echo"\nmode = "async"\n')
    result = run("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "queues.q.mode" in result.stderr


def test_env_override_is_validated_too() -> None:
    result = run("check-config", env={"SPOOL_SERVER__MAX_BATCH": "0"})
    assert result.returncode == 2
    assert "server.max_batch" in result.stderr


def test_healthcheck_follows_readiness(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(toml_config(tmp_path, '[queues.q]\nhandler = "tests.handlers:echo"\n'))
    bind_env = {"SPOOL_SERVER__BIND": f"0.0.0.0:{server.port}"}
    assert run("healthcheck", "--config", str(server.config_path), env=bind_env).returncode == 1
    server.start()
    assert run("healthcheck", "--config", str(server.config_path), env=bind_env).returncode == 0
    assert server.stop() == 0


def one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_a_directory_or_a_non_utf8_file_as_config_is_one_line(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[queues.q]\nhandler = "tests.handlers:echo"\n# caf\xe9\n')
    for command in (["check-config"], ["serve"], []):  # [] is `python -m service`: serve
        for config in (tmp_path, latin1):
            one_line_failure(run(*command, "--config", str(config)), str(config))
            one_line_failure(run(*command, env={"SPOOL_CONFIG": str(config)}), str(config))
    one_line_failure(run("check-config", "--config", str(latin1)), "UTF-8", "byte 0xe9")
    one_line_failure(run("check-config", "--config", str(tmp_path)), "is a directory")


def test_an_endless_config_file_is_refused_not_read_forever(tmp_path: Path) -> None:
    one_line_failure(run("check-config", "--config", "/dev/zero"), "/dev/zero", "larger than")


def test_values_that_cannot_work_are_refused_before_the_start() -> None:
    for command in ("check-config", "serve"):
        for name, value, key in [
            ("SPOOL_QUEUES__ECHO__CONCURRENCY", "3000000", "queues.echo.concurrency"),
            ("SPOOL_EXECUTOR__THREADS", "1000000", "executor.threads"),
            ("SPOOL_SERVER__GRACEFUL_TIMEOUT_S", "inf", "server.graceful_timeout_s"),
            ("SPOOL_SERVER__BIND", "999.1.1.1:8000", "server.bind"),
        ]:
            one_line_failure(run(command, env={name: value}), key)


def test_a_data_path_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    for backend, key in (("memory", "broker.snapshot_path"), ("sqlite", "broker.sqlite_path")):
        variable = "SPOOL_" + key.upper().replace(".", "__")
        for path, needle in ((tmp_path, "is a directory"), (a_file / "x", "is not a directory")):
            env = {"SPOOL_BROKER__BACKEND": backend, variable: str(path)}
            for command in ("check-config", "serve"):
                one_line_failure(run(command, env=env), key, needle)


def test_check_config_accepts_the_dockerfiles_environment(tmp_path: Path) -> None:
    """The image's SPOOL_* ENV, with its /data (made by the Dockerfile) under tmp_path."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    env = dict(re.findall(r"\b(SPOOL_[A-Z_]+)=(\S+)", dockerfile))
    assert "SPOOL_BROKER__SQLITE_PATH" in env and "SPOOL_BROKER__SNAPSHOT_PATH" in env
    data = tmp_path / "data"
    data.mkdir()
    env = {name: value.replace("/data/", f"{data}/") for name, value in env.items()}
    for backend in ("memory", "sqlite"):
        result = run("check-config", env={**env, "SPOOL_BROKER__BACKEND": backend})
        assert result.returncode == 0, result.stderr
        assert "config OK" in result.stdout
