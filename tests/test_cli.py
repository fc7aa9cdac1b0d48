"""The command line as users run it: check-config, serve's start failures, healthcheck."""

from __future__ import annotations

import os
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
