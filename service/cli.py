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
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from hypercorn.config import Config as HypercornConfig

from . import client_cli
from .api.auth import Authenticator
from .app import create_app
from .config import Settings, load_settings
from .config_values import check_data_paths
from .errors import SpoolError
from .failures import describe
from .fdlimit import guard_accept
from .grace import CONNECTION_GRACE_S, STRAY_TASK_GRACE_S
from .handlers.registry import resolve_queue_handlers
from .logs import setup_logging
from .process import configure_process, freeze_startup_objects, stop_helper_processes
from .runtime import Runtime
from .serving import HttpServer, bind, http_config

log = logging.getLogger("service")

DEFAULT_CONFIG = "config.toml"
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
        if args.command == "healthcheck":
            return healthcheck(settings)
        check_data_paths(settings.broker)
        if args.command == "check-config":
            return check_config(settings)
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
    # No proxy: an http_proxy in the container's environment must not take the probe away.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=HEALTHCHECK_TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"spool: {url} answered {exc.code}", file=sys.stderr)
    except OSError as exc:
        print(f"spool: {url}: {exc}", file=sys.stderr)
    return 1


def run_server(settings: Settings) -> int:
    setup_logging(settings.log)
    config = http_config(settings.server)
    try:
        # First of all: a start that cannot have its address (in use, perhaps by a running
        # Spool on the same snapshot or journal) ends here, having touched nothing.
        sockets = bind(config, settings.server, os.environ)
    except SpoolError as exc:
        log.error("%s", exc.detail)
        return 1
    try:
        return serve_on(settings, config, sockets)
    finally:
        for sock in sockets:
            sock.close()  # already closed by the server, unless the start failed before it


def serve_on(settings: Settings, config: HypercornConfig, sockets: list[socket.socket]) -> int:
    configure_process(settings)
    runtime = Runtime(settings)
    stray = False
    try:
        code, stray = run_loop(serve(settings, runtime, config, sockets), runtime.stop_now)
    except BaseException as exc:
        # The start failed, or the runtime or the server raised: by now the runtime's own
        # `finally` has closed the broker (written the memory snapshot); say why it ended.
        code = report_end(settings, exc)
    stop_helper_processes()
    if stray or runtime.executors.abandoned_threads or threading.active_count() > 1:
        # Handler threads that overran cannot be joined; they must not hold up the exit.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def run_loop(main: Coroutine[Any, Any, int], stop_now: Callable[[], None]) -> tuple[int, bool]:
    """asyncio.run(main), with two differences. asyncio lets a SystemExit or KeyboardInterrupt
    raised in any task or callback out of the loop at once, leaving every task where it
    stood, the broker unclosed: here it is logged and `stop_now()` is called, and the loop
    runs on until main has persisted what is held and returned (exit code 1). And tasks that
    ignore their cancellation (an async handler that swallows CancelledError) get
    STRAY_TASK_GRACE_S, not forever: asyncio.run would wait for them. Returns (exit code,
    whether such tasks were left behind)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = _run_to_the_end(loop, loop.create_task(main, name="serve"), stop_now)
        if _end_stray_tasks(loop):
            return code, True
        loop.run_until_complete(loop.shutdown_asyncgens())
        return code, False
    finally:
        asyncio.set_event_loop(None)
        if not loop.is_running():
            loop.close()


def _run_to_the_end(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task[int], stop_now: Callable[[], None]
) -> int:
    """`task`'s exit code; a SystemExit or KeyboardInterrupt that reaches the loop calls
    `stop_now()` once, the loop runs on until the task has returned, and the code is 1."""
    escaped: BaseException | None = None
    while not task.done():
        try:
            code = loop.run_until_complete(task)
        except (SystemExit, KeyboardInterrupt) as exc:
            if escaped is None:
                escaped = exc
                log.critical(
                    "%s reached the event loop: stopping now, after persisting what is held",
                    describe_exit(exc),
                    exc_info=exc,
                )
                stop_now()
    return 1 if escaped is not None else code


def _end_stray_tasks(loop: asyncio.AbstractEventLoop) -> bool:
    """Cancels the tasks still running and gives them STRAY_TASK_GRACE_S; True when some
    ignore their cancellation (the exit goes on without them)."""
    pending = asyncio.all_tasks(loop)
    for stray_task in pending:
        stray_task.cancel()
    if not pending:
        return False
    done, left = loop.run_until_complete(asyncio.wait(pending, timeout=STRAY_TASK_GRACE_S))
    for stray_task in done:
        if not stray_task.cancelled() and stray_task.exception() is not None:
            log.error(
                "task %s failed at exit", stray_task.get_name(), exc_info=stray_task.exception()
            )
    if left:
        log.warning("%d handler tasks ignore cancellation; exiting without them", len(left))
        return True
    return False


def describe_exit(exc: BaseException) -> str:
    type_name, message = describe(exc)
    return f"{type_name}({message})" if message else type_name


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def report_end(settings: Settings, exc: BaseException) -> int:
    """Logs one line saying why the service ended early; returns the exit code."""
    if isinstance(exc, BaseExceptionGroup):
        exc = first_leaf(exc)
    if isinstance(exc, SpoolError):
        log.error("%s", exc.detail)
        return 2
    if isinstance(exc, OSError):
        log.error("cannot serve on %s: %s", settings.server.bind, exc)
        return 1
    log.critical("the service stopped unexpectedly: %s", describe_exit(exc), exc_info=exc)
    return 1


async def serve(
    settings: Settings, runtime: Runtime, config: HypercornConfig, sockets: list[socket.socket]
) -> int:
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
    # Hypercorn's own shape (asyncio/run.py): the runtime beside the server. The stop, the
    # listener's close included, is the runtime's one coroutine (Runtime._stop).
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(), name="runtime")
        await runtime.ready.wait()
        freeze_startup_objects()  # the second phase of process.py, once the broker is loaded
        # Not hypercorn.asyncio.serve: its writes and its stop wait on clients without bound.
        # `app` runs the whole ASGI stack (api/front.py): front door, publish fast path, Quart.
        with guard_accept(loop):
            server = await HttpServer.start(
                app, config, sockets, send_timeout_s=settings.server.send_timeout_s
            )
            try:
                runtime.close_listener_last(server)
                log.info(
                    "serving on http://%s (backend %s)",
                    settings.server.bind,
                    settings.broker.backend,
                )
                await runtime.stopped.wait()
            finally:
                # Already closed by the stop, unless this task was cancelled first.
                await server.close(CONNECTION_GRACE_S)
    log.info("stopped")
    return 0
