"""python -m service [serve|check-config|healthcheck] [--config PATH]

Exit codes: 0 ok; 1 the service failed or is not ready; 2 bad config or usage.
The client commands (publish, get, queues, dead, redrive, pause, resume) live in
client_cli.py, with their own exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from . import client_cli
from .api.auth import Authenticator
from .api.fastpath import FastPublish
from .app import create_app
from .config import Settings, load_settings
from .errors import SpoolError
from .handlers.registry import resolve_queue_handlers
from .logs import setup_logging
from .runtime import Runtime

log = logging.getLogger("service")

DEFAULT_CONFIG = "config.toml"
# Hypercorn's own grace for open connections once the runtime has drained and persisted.
CONNECTION_GRACE_S = 2.0
HEALTHCHECK_TIMEOUT_S = 3.0


def config_path(explicit: str | None) -> str | None:
    path = explicit or os.environ.get("SPOOL_CONFIG")
    if path:
        return path
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in client_cli.COMMANDS:
        return client_cli.main(argv)
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description=__doc__.splitlines()[0],
        epilog=f"client commands: {', '.join(client_cli.COMMANDS)} (e.g. publish --help)",
    )
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "check-config", "healthcheck"]
    )
    parser.add_argument("--config", help="config file (default: $SPOOL_CONFIG or ./config.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(config_path(args.config))
        if args.command == "check-config":
            return check_config(settings)
        if args.command == "healthcheck":
            return healthcheck(settings)
        return run_server(settings)
    except SpoolError as exc:
        print(f"spool: {exc.detail}", file=sys.stderr)
        return 2


def check_config(settings: Settings) -> int:
    resolve_queue_handlers(settings.queues)
    Authenticator(settings.auth)
    print(f"config OK: {len(settings.queues)} queues, backend {settings.broker.backend}")
    return 0


def healthcheck(settings: Settings) -> int:
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{settings.server.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=HEALTHCHECK_TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"spool: {url} answered {exc.code}", file=sys.stderr)
    except OSError as exc:
        print(f"spool: {url}: {exc}", file=sys.stderr)
    return 1


def run_server(settings: Settings) -> int:
    setup_logging(settings.log)
    runtime = Runtime(settings)
    try:
        code = asyncio.run(serve(settings, runtime))
    except BaseExceptionGroup as group:
        code = report_start_failure(settings, first_leaf(group))
    except (SpoolError, OSError) as exc:
        code = report_start_failure(settings, exc)
    if runtime.executors.abandoned_threads or threading.active_count() > 1:
        # Handler threads that overran cannot be joined; they must not hold up the exit.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def report_start_failure(settings: Settings, exc: BaseException) -> int:
    if isinstance(exc, SpoolError):
        log.error("%s", exc.detail)
        return 2
    if isinstance(exc, OSError):
        log.error("cannot serve on %s: %s", settings.server.bind, exc)
        return 1
    raise exc


async def serve(settings: Settings, runtime: Runtime) -> int:
    app = create_app(settings, runtime)
    auth = Authenticator(settings.auth)
    if not auth.enabled and settings.server.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "auth.tokens is empty and %s is not loopback: anyone who can reach it "
            "can publish, cancel and redrive",
            settings.server.bind,
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.request_stop)
    config = HypercornConfig()
    config.bind = [settings.server.bind]
    config.graceful_timeout = CONNECTION_GRACE_S
    config.accesslog = None  # the app logs each request itself, with its request id
    config.errorlog = logging.getLogger("hypercorn.error")
    config.workers = 1  # memory and sqlite hold their queues in this process
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(), name="runtime")
        await runtime.ready.wait()
        log.info("serving on http://%s (backend %s)", settings.server.bind, settings.broker.backend)
        # The publish routes' successes skip Quart's request machinery (api/fastpath.py).
        fast = FastPublish(app, settings, runtime)  # type: ignore[arg-type]
        await hypercorn_serve(fast, config, shutdown_trigger=runtime.stopped.wait)  # type: ignore[arg-type]
    log.info("stopped")
    return 0
