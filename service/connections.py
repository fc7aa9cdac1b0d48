"""Hypercorn's asyncio TCP server, closing a connection as soon as its client has closed it.

Hypercorn 0.18's `TCPServer.run()` reads until the client's EOF and then leaves its
connection task group, which waits for every task in it before the socket is closed. After
a response that group still holds the keep-alive timer (`keep_alive_timeout`, the 5 s
HEAD_TIMEOUT_S in cli.py), and nothing stops it on EOF: H11Protocol only closes a stream
in progress. So every connection a client closed sat in CLOSE_WAIT, holding its fd, for
5 s: at ~300 short connections a second that is the whole default limit of 1024 fds.

No Hypercorn setting reaches this (`read_timeout` bounds reads, not the timer), so a
subclass does, and `close_on_client_eof()` puts it where Hypercorn's serve builds one per
connection: the module global `hypercorn.asyncio.run.TCPServer`, for the duration of a
serve. tests/test_connections.py holds it to its promise over a real socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import hypercorn.asyncio.run as hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Event, Updated


class PromptCloseTCPServer(TCPServer):
    """A TCPServer that stops waiting for the client once the client has gone.

    A client that closes (or half-closes) after its response leaves nothing to wait for,
    so the keep-alive timer stops and the connection closes at once. A request still in
    progress at the client's EOF is Hypercorn's as before (it tells the app the client
    disconnected); should its stream end with the connection made idle again, that is
    the moment to close, not the start of another keep-alive wait.
    """

    _client_gone = False

    async def _read_data(self) -> None:
        await super()._read_data()
        # The client closed its side or the read failed: no further request can come.
        self._client_gone = True
        await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if self._client_gone and isinstance(event, Updated) and event.idle:
            await self._close()
            return
        await super().protocol_send(event)


@contextmanager
def close_on_client_eof() -> Iterator[None]:
    """Within it, hypercorn.asyncio.serve serves each connection with PromptCloseTCPServer."""
    # run.py imports TCPServer without re-exporting it, hence the attr-defined ignores.
    original = hypercorn_run.TCPServer  # type: ignore[attr-defined]
    hypercorn_run.TCPServer = PromptCloseTCPServer  # type: ignore[attr-defined]
    try:
        yield
    finally:
        hypercorn_run.TCPServer = original  # type: ignore[attr-defined]
