"""The HTTP server: Hypercorn's loop (hypercorn.asyncio.run.worker_serve) for the one case
Spool serves (one worker, plain TCP), with connections.BoundedConnection for each client and
a close that no client can hold up.

Why not hypercorn.asyncio.serve: it offers no hook for its connection class (only its module
global), and at a stop it waits for the tasks serving connections without a bound once its
grace is over. A client stuck in a write, or a handler that outlives the grace, kept the
process alive after "runtime stopped" for as long as that client stayed. Here connections get
`grace_s` to finish their answers; those still open are then aborted and their tasks
cancelled (grace.ABORTED_GRACE_S), so the stop stays within graceful_timeout_s + 5 s
whatever clients do. worker_serve's start and stop are split in two (start, close) so the
runtime's one stop coroutine can close the listener last (Runtime._stop).

The socket is bound first of all (`bind`, called by cli.run_server before the runtime is
even built): a start that cannot have its address says so in one line and ends, having
started no consumer and read or written no snapshot or journal, which may be a running
node's.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Mapping
from typing import Any

from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.statsd import StatsdLogger
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework, LifespanState
from hypercorn.utils import wrap_app

from .config import ServerSettings
from .config_values import name_the_variable
from .connections import BoundedConnection
from .errors import ConfigError
from .grace import ABORTED_GRACE_S, HEAD_TIMEOUT_S

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 32 * 1024  # above app.py's MAX_TARGET_BYTES + MAX_HEADER_BYTES
# What a failed bind means for the one who configured it, by errno.
BIND_FAILURES = {
    errno.EADDRINUSE: "the address is in use (another Spool, or another server, listens there)",
    errno.EADDRNOTAVAIL: "{host} is not an address of this host",
    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
}


def http_config(server: ServerSettings) -> Config:
    config = Config()
    config.bind = [server.bind]
    # Hostile clients: a request head must arrive within HEAD_TIMEOUT_S (Hypercorn's idle
    # timer runs until the head is complete) and fit in MAX_HEAD_BYTES (else 431/400); the
    # body has the app's BODY_TIMEOUT_S. No read_timeout: it would cut off legitimate
    # long-polls (GET ?wait=60) and event streams, where the client rightly sends nothing.
    config.keep_alive_timeout = HEAD_TIMEOUT_S
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    config.read_timeout = None
    config.include_server_header = False
    config.accesslog = None  # the app logs each request itself, with its request id
    config.errorlog = logging.getLogger("hypercorn.error")
    config.workers = 1  # memory and sqlite hold their queues in this process
    return config


def bind(config: Config, server: ServerSettings, environ: Mapping[str, str]) -> list[socket.socket]:
    """The listening sockets, bound (not yet listening: clients are refused, as before the
    bind, until HttpServer.start). A ConfigError naming server.bind, the address and why,
    when the address cannot be had."""
    try:
        sockets = config.create_sockets().insecure_sockets
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            reason = f"cannot resolve {server.host!r} ({exc.strerror})"
        else:
            template = BIND_FAILURES.get(exc.errno or 0, exc.strerror or str(exc))
            reason = template.format(host=server.host)
        error = ConfigError(f"server.bind: cannot listen on {server.bind}: {reason}")
        raise name_the_variable(error, environ) from None
    for sock in sockets:
        # Hypercorn marks them inheritable (for its reloader): a child a handler starts
        # (os.system, a daemon) would then hold the port after Spool ends, and the next
        # start would find its address in use.
        sock.set_inheritable(False)
    return sockets


class HttpServer:
    """`app` served on `config.bind`: start() listens, close() stops (once)."""

    def __init__(
        self,
        lifespan: Lifespan,
        lifespan_task: asyncio.Task[None],
        context: WorkerContext,
        connections: Connections,
        servers: list[asyncio.Server],
    ) -> None:
        self._lifespan = lifespan
        self._lifespan_task = lifespan_task
        self._context = context
        self._connections = connections
        self._servers = servers
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        app: ASGIFramework,
        config: Config,
        sockets: list[socket.socket],
        *,
        send_timeout_s: float,
    ) -> HttpServer:
        """Runs the app's startup, then listens on `sockets` (bind(), which it now owns)."""
        loop = asyncio.get_running_loop()
        wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
        config.set_statsd_logger_class(StatsdLogger)
        state: LifespanState = {}
        lifespan = Lifespan(wrapped, config, loop, state)
        lifespan_task = loop.create_task(lifespan.handle_lifespan(), name="lifespan")
        await lifespan.wait_for_startup()
        if lifespan_task.done() and (failure := lifespan_task.exception()) is not None:
            raise failure
        context = WorkerContext(None)
        connections = Connections()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = BoundedConnection(wrapped, loop, config, context, state, reader, writer)
            connection.send_timeout_s = send_timeout_s
            await connections.run(connection)

        servers = [
            await asyncio.start_server(accept, backlog=config.backlog, sock=sock)
            for sock in sockets
        ]
        return cls(lifespan, lifespan_task, context, connections, servers)

    async def close(self, grace_s: float) -> None:
        """Stops accepting, gives open connections `grace_s`, aborts the rest and runs the
        app's shutdown. A second call waits for the first."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(grace_s), name="http-close"
            )
        await asyncio.shield(self._closing)

    async def _close(self, grace_s: float) -> None:
        await self._context.terminated.set()  # idle keep-alive connections close now
        for server in self._servers:
            server.close()
            await server.wait_closed()
        await self._connections.close(grace_s)
        await self._lifespan.wait_for_shutdown()
        if not self._lifespan_task.done():
            self._lifespan_task.cancel()
            await asyncio.wait([self._lifespan_task])


class Connections:
    """The open connections and the tasks serving them, for the stop to cut off."""

    def __init__(self) -> None:
        self._open: dict[asyncio.Task[Any], BoundedConnection] = {}
        self._cut_off: set[asyncio.Task[Any]] = set()

    async def run(self, connection: BoundedConnection) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio runs each accepted connection in a task
        self._open[task] = connection
        try:
            await connection.run()
        except asyncio.CancelledError:
            if task not in self._cut_off:
                raise
            # Cancelled by close() below, on purpose: ending quietly keeps asyncio from
            # logging each one as an error.
        finally:
            del self._open[task]
            self._cut_off.discard(task)

    async def close(self, grace_s: float) -> None:
        """Waits up to `grace_s` for the open connections to end; aborts those left and
        cancels what serves them (a long-poll, a stream), waiting ABORTED_GRACE_S more."""
        if self._open:
            await asyncio.wait(list(self._open), timeout=grace_s)
        left = dict(self._open)
        if not left:
            return
        log.info("cutting off %d connections still open after %.1f s", len(left), grace_s)
        for task, connection in left.items():
            connection.abort()
            self._cut_off.add(task)
            task.cancel()
        await asyncio.wait(list(left), timeout=ABORTED_GRACE_S)
