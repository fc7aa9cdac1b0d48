"""Hypercorn's asyncio TCP server per connection, closing a connection as soon as its client
has closed it, and bounding every write to a client.

Hypercorn 0.18's `TCPServer.run()` reads until the client's EOF and then leaves its
connection task group, which waits for every task in it before the socket is closed. After
a response that group still holds the keep-alive timer (`keep_alive_timeout`, the 5 s
HEAD_TIMEOUT_S in grace.py), and nothing stops it on EOF: H11Protocol only closes a stream
in progress. So every connection a client closed sat in CLOSE_WAIT, holding its fd, for
5 s: at ~300 short connections a second that is the whole default limit of 1024 fds.

Hypercorn also writes with `await writer.drain()`, which waits as long as the client takes
no bytes, and closes with `writer.close()` then `wait_closed()`, which waits until the client
has taken everything still buffered: a client that stops reading (an event stream, a large
answer, pipelined requests it never reads) held its connection and the task serving it
forever, and so the graceful stop too (tests/test_slow_clients.py).

No Hypercorn setting reaches either (`read_timeout` bounds reads, not the timer or the
writes), so subclasses do, and serving.py builds one per connection.
tests/test_connections.py holds the first to its promise over a real socket.
"""

from __future__ import annotations

import asyncio
import logging

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Closed, Event, RawData, Updated

log = logging.getLogger(__name__)


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


class BoundedConnection(PromptCloseTCPServer):
    """A connection whose writes and close wait at most `send_timeout_s` for the client:
    past it the connection is aborted (a reset: `abort()` drops what is buffered, where
    `close()` would wait to flush it), and the app sees the client disconnect."""

    send_timeout_s: float

    def abort(self) -> None:
        self.writer.transport.abort()

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            return await super().protocol_send(event)
        async with self.send_lock:
            try:
                self.writer.write(event.data)
                transport = self.writer.transport
                if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
                    # At or under the low-water mark writing is not paused: drain() returns
                    # at once, and the usual answer skips arming a timer (the publish path).
                    await self.writer.drain()
                else:
                    async with asyncio.timeout(self.send_timeout_s):
                        await self.writer.drain()
            except TimeoutError:
                log.warning(
                    "a client took no bytes for %.0f s: disconnected",
                    self.send_timeout_s,
                    extra={"client": self.writer.get_extra_info("peername")},
                )
                self.abort()
                await self.protocol.handle(Closed())
            except (ConnectionError, RuntimeError):
                await self.protocol.handle(Closed())

    async def _close(self) -> None:
        try:
            self.writer.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            pass
        self.writer.close()
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await self.writer.wait_closed()
        except TimeoutError:
            self.abort()
        except (ConnectionError, RuntimeError):
            pass  # already closed
        except asyncio.CancelledError:
            self.abort()
            raise
        finally:
            await self.idle_task.stop()
