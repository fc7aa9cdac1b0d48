"""Process-wide settings are made in one place (service/process.py), at the start of the
process: building and running an app changes none of them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable

from service import Settings
from service.process import configure_process

from .conftest import ROOT, client_for

# Run in a fresh interpreter: the test process's own settings are whatever earlier tests
# (and tests/conftest.py's `running`, which calls configure_process) left.
APP_WITHOUT_CONFIGURE = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    import prometheus_client.metrics

    interval = sys.getswitchinterval()
    from service import Runtime, create_app
    from service.config import settings_from_dict

    async def main():
        settings = settings_from_dict({
            "executor": {"switch_interval_ms": 2.5},
            "broker": {"snapshot_path": sys.argv[1]},
            "queues": {"q": {"handler": "tests.handlers:echo"}},
        })
        runtime = Runtime(settings)
        app = create_app(settings, runtime)
        task = asyncio.create_task(runtime.run())
        await runtime.ready.wait()
        async with app.test_app() as test_app:
            scrape = await test_app.test_client().get("/metrics")
            assert scrape.status_code == 200
        during = sys.getswitchinterval()
        runtime.request_stop()
        runtime.request_stop()
        await task
        return during

    during = asyncio.run(main())
    print(json.dumps({
        "before": interval,
        "during": during,
        "after": sys.getswitchinterval(),
        "created_series": prometheus_client.metrics._use_created,
        "frozen": gc.get_freeze_count(),
    }))
    """
)


def test_building_and_running_an_app_changes_no_process_wide_setting(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-c", APP_WITHOUT_CONFIGURE, f"{tmp_path}/snapshot.jsonl"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {
        "before": 0.005,  # Python's default
        "during": 0.005,  # not the runtime's to change: configure_process sets it
        "after": 0.005,
        "created_series": True,  # prometheus_client's default, left alone
        "frozen": 0,  # freeze_startup_objects is the caller's second phase
    }


def test_configure_process_sets_the_switch_interval_from_settings(
    tmp_settings: Callable[..., Settings],
) -> None:
    before = sys.getswitchinterval()
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:echo"}}, executor={"switch_interval_ms": 2.5}
    )
    try:
        configure_process(settings)
        assert sys.getswitchinterval() == 0.0025
    finally:
        sys.setswitchinterval(before)


async def test_metrics_write_no_created_series_whatever_the_process_has_set(
    tmp_settings: Callable[..., Settings],
) -> None:
    """No *_created series, without prometheus_client's process-wide switch: every family
    the registry holds is one that never writes them (metrics.py)."""
    settings = tmp_settings({"q": {"handler": "tests.handlers:echo", "timeout_s": 5}})
    async with client_for(settings) as (client, runtime):
        runtime.metrics.queues["q"].timeouts.inc()
        runtime.metrics.loop_lag.observe(0.01)
        text = await (await client.get("/metrics")).get_data(as_text=True)
    assert 'spool_attempt_timeouts_total{queue="q"} 1.0' in text
    assert "spool_event_loop_lag_seconds_count" in text
    assert "_created" not in text
