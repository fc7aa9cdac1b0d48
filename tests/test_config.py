from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.config import load_settings
from service.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


QUEUE = '[queues.q]\nhandler = "tests.handlers:echo"\n'


def test_defaults_fill_every_key(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, QUEUE), environ={})
    assert s.server.bind == "0.0.0.0:8000"
    assert s.server.graceful_timeout_s == 8
    assert s.broker.backend == "memory"
    assert s.executor.threads == 8 and s.executor.processes == 2
    assert s.results.ttl_s == 3600 and s.results.max_entries == 100_000
    assert s.auth.public_metrics is False and s.auth.tokens == []
    q = s.queues["q"]
    assert (q.mode, q.concurrency, q.max_size, q.max_retries) == ("thread", 4, 10_000, 3)
    assert (q.retry_backoff_s, q.retry_backoff_max_s, q.timeout_s, q.options) == (1.0, 60, 30, {})


def test_repo_config_is_valid() -> None:
    s = load_settings(Path(__file__).parent.parent / "config.toml", environ={})
    assert "default" in s.queues


def test_env_overrides_parse_toml_values(tmp_path: Path) -> None:
    env = {
        "SPOOL_SERVER__BIND": "0.0.0.0:9000",
        "SPOOL_BROKER__BACKEND": "sqlite",
        "SPOOL_QUEUES__Q__CONCURRENCY": "8",
        "SPOOL_AUTH__TOKENS": '["admin:s3cret"]',
        "SPOOL_AUTH__PUBLIC_METRICS": "true",
        "SPOOL_CONFIG": "ignored.toml",
    }
    s = load_settings(write(tmp_path, QUEUE), environ=env)
    assert s.server.port == 9000
    assert s.broker.backend == "sqlite"
    assert s.queues["q"].concurrency == 8
    assert s.auth.tokens == ["admin:s3cret"]
    assert s.auth.public_metrics is True


def test_env_can_define_a_whole_queue(tmp_path: Path) -> None:
    env = {"SPOOL_QUEUES__EXTRA__HANDLER": "tests.handlers:echo"}
    s = load_settings(write(tmp_path, QUEUE), environ=env)
    assert set(s.queues) == {"q", "extra"}


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        (QUEUE + "concurrency = 0\n", {}, "queues.q.concurrency"),
        (QUEUE + "max_size = -1\n", {}, "queues.q.max_size"),
        (QUEUE + "mode = 'fork'\n", {}, "queues.q.mode"),
        (QUEUE + "bogus = 1\n", {}, "queues.q.bogus: unknown key"),
        ("[server]\nbogus = 1\n" + QUEUE, {}, "server.bogus: unknown key"),
        ("[server]\nmax_batch = 'many'\n" + QUEUE, {}, "server.max_batch"),
        ("[server]\nbind = 'nohost'\n" + QUEUE, {}, "server.bind"),
        ('[queues."Bad Name"]\nhandler = "tests.handlers:echo"\n', {}, "queues.Bad Name"),
        ("[queues.q]\nmode = 'thread'\n", {}, "queues.q.handler: required"),
        (QUEUE, {"SPOOL_EXECUTOR__THREADS": "0"}, "executor.threads"),
        (QUEUE, {"SPOOL_BROKER__BACKEND": "redis"}, "broker.backend"),
        ("", {}, "queues: define at least one"),
        (QUEUE + "retry_backoff_s = 10\nretry_backoff_max_s = 1\n", {}, "retry_backoff_max_s"),
    ],
)
def test_bad_config_names_the_dotted_key(
    tmp_path: Path, text: str, env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ=env)
    assert needle in caught.value.detail
    assert "\n" not in caught.value.detail


def test_missing_file_and_bad_toml_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\n"), environ={})


def test_an_unwritable_data_directory_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root (who runs these tests here) may write anywhere, so the one thing simulated is
    the kernel's answer to access(2) for tmp_path; the rest is the real file system."""
    from service.config_values import check_data_paths

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path and real_access(p, mode))
    for backend, key in (("memory", "snapshot_path"), ("sqlite", "sqlite_path")):
        env = {
            "SPOOL_BROKER__BACKEND": backend,
            f"SPOOL_BROKER__{key.upper()}": str(tmp_path / "f"),
        }
        settings = load_settings(write(tmp_path, QUEUE), environ=env)
        with pytest.raises(ConfigError) as caught:
            check_data_paths(settings.broker)
        assert caught.value.detail.startswith(f"broker.{key}: ")
        assert "not writable" in caught.value.detail
