"""The connection of one node to RabbitMQ: opened at start (after the replay of the event
history), reopened with backoff whenever it drops, closed at the stop.

While it is down, writes answer 503 (NodeState.usable_link) and /readyz is 503; the
deliveries that came through the old link come back from RabbitMQ through the new one.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq

from ...config import QueueSettings, ResultsSettings
from ...errors import StartupError
from ...grace import AMQP_CLOSE_S
from .intake import Intake
from .link import LINK_ERRORS, Link
from .state import NodeState
from .stream import Stream

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
CLOSE_OLD_S = 5.0  # closing a link whose connection may be half gone


class Connection:
    def __init__(
        self,
        url: str,
        queues: dict[str, QueueSettings],
        results: ResultsSettings,
        state: NodeState,
        stream: Stream,
        intake: Intake,
    ) -> None:
        self._url = url
        self._queues = queues
        self._results = results
        self._state = state
        self._stream = stream
        self._intake = intake
        self._links = 0  # numbers the links, for the logs

    async def start(self, timeout: float) -> None:
        """Connects (retrying while RabbitMQ starts), replays the event history up to now,
        then starts consuming: all within `timeout` seconds, else a StartupError."""
        shown = self._state.shown_url
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        await self._connect()
                        break
                    except aiormq.exceptions.ChannelPreconditionFailed as exc:
                        raise StartupError(
                            f"broker.amqp_url: a queue on {shown} was declared with other "
                            f"arguments than this config gives it ({exc}); delete it or "
                            "align max_size / results settings across nodes"
                        ) from None
                    except (*LINK_ERRORS, aiormq.exceptions.AMQPError, OSError) as exc:
                        # e.g. a RabbitMQ still starting: its stream is not up yet
                        self._state.last_error = str(exc) or type(exc).__name__
                        await asyncio.sleep(1.0)
                # Replay the event history up to now before this node takes any work, so it
                # knows what was cancelled, finished or cut short by a node that died.
                await self._state.caught_up.wait()
                for name in self._queues:
                    await self._intake.apply(name)
        except TimeoutError:
            raise StartupError(
                f"broker.amqp_url: RabbitMQ at {shown} did not answer within {timeout:g} s "
                f"({self._state.last_error or 'no reply'})"
            ) from None

    async def _connect(self) -> None:
        self._links += 1
        link = await Link.open(self._links, self._url)
        replaying = not self._state.caught_up.is_set()
        try:
            await link.declare(self._queues, self._results)
            if replaying:
                await self._intake.load_pause_state(link)
            await self._stream.subscribe(link)
            for name, qs in self._queues.items():
                await link.open_work(name, qs.concurrency)
            if not replaying:
                await self._intake.start_unpaused(link)
            else:
                await self._stream.mark_replay_end(link)
        except BaseException:
            await link.close()
            raise
        self._state.attach(link)
        log.info("connected to RabbitMQ at %s", self._state.shown_url)

    async def keep(self) -> None:
        """Reopens the connection, with backoff, whenever it drops; until cancelled."""
        backoff = RECONNECT_MIN_S
        while True:
            link = self._state.link
            if link is not None:
                await link.closed.wait()
                self._state.detach(link)
                self._intake.forget_deliveries()
                log.warning("lost the connection to RabbitMQ; reconnecting")
                try:
                    await asyncio.wait_for(link.close(), CLOSE_OLD_S)  # when only a channel died
                except Exception:
                    log.debug("closing the old connection failed", exc_info=True)
            try:
                await self._connect()
                backoff = RECONNECT_MIN_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._state.last_error = str(exc) or type(exc).__name__
                log.warning("reconnecting to RabbitMQ failed: %s", self._state.last_error)
                await asyncio.sleep(backoff)
                backoff = min(RECONNECT_MAX_S, backoff * 2)

    async def close(self) -> None:
        link = self._state.detach()
        if link is None:
            return
        # Unacked deliveries go back to RabbitMQ. Bounded (SPEC bounds the stop): a RabbitMQ
        # that does not answer is left to see the connection drop when the process ends.
        closing = asyncio.ensure_future(link.close())
        done, _ = await asyncio.wait({closing}, timeout=AMQP_CLOSE_S)
        if not done:
            closing.cancel()
            log.warning("RabbitMQ did not answer the close within %g s; leaving it", AMQP_CLOSE_S)
        elif closing.exception() is not None:
            log.warning("closing the RabbitMQ connection failed", exc_info=closing.exception())
