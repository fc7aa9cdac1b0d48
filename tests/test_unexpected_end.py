"""An exception escaping the runtime ends the service with what it holds persisted and one
line in the log that says why (cli.run_loop and cli.report_end, as run_server calls them).

No real fault makes the runtime raise on demand, so the broker's scheduler task is made to
fail: a LocalBroker whose run() raises once it holds a message.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from service import Runtime, Settings, cli
from service.broker.local import LocalBroker
from service.broker.storage import SnapshotStorage
from service.model import Envelope
from service.serving import bind, http_config

from .conftest import free_port
from .shutdown_load import snapshot_lines


class SchedulerBreaks(LocalBroker):
    async def run(self) -> None:
        await self.publish("q", [Envelope(body=msgspec.Raw(b'"kept"'))])
        raise RuntimeError("the scheduler broke")


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # serve() freezes what exists once it is ready


@pytest.mark.usefixtures("unfrozen")
def test_an_exception_escaping_the_runtime_persists_what_is_held_and_logs_why(
    tmp_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tmp_settings(
        {"q": {"handler": "tests.handlers:echo"}},
        server={"bind": f"127.0.0.1:{free_port()}"},
    )
    runtime = Runtime(
        settings,
        broker=SchedulerBreaks(
            settings.queues, settings.results, storage=SnapshotStorage(tmp_path / "snapshot.jsonl")
        ),
    )
    config = http_config(settings.server)
    sockets = bind(config, settings.server, {})
    try:
        with pytest.raises(BaseExceptionGroup) as ended:
            cli.run_loop(cli.serve(settings, runtime, config, sockets), runtime.stop_now)
    finally:
        for sock in sockets:
            sock.close()
    assert cli.report_end(settings, ended.value) == 1
    critical = [r for r in caplog.records if r.levelname == "CRITICAL"]
    assert [r.getMessage() for r in critical] == [
        "the service stopped unexpectedly: RuntimeError(the scheduler broke)"
    ]
    bodies = [r["body"] for r in snapshot_lines(tmp_path / "snapshot.jsonl")]
    assert bodies == ["kept"]
