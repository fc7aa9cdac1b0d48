"""The log handler keeps the loop's routine lines for one short write, without reordering
or delaying anything that matters."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator

import pytest

from service.logs import LoopBufferedHandler


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, LoopBufferedHandler]]:
    stream = io.StringIO()
    handler = LoopBufferedHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("spool-test-logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.handlers[:] = []


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


async def after_the_flush_timer() -> None:
    """Returns once the handler's flush timer has run. Not a guess at how long a write takes:
    both are timers of this one loop, and the loop runs due timers in deadline order, so a
    timer set later for a later deadline always runs after the flush, however loaded the
    machine (the factor only keeps the two deadlines apart at the clock's resolution)."""
    await asyncio.sleep(LoopBufferedHandler.FLUSH_AFTER_S * 3)


async def test_routine_lines_on_the_loop_are_written_together_soon(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, _ = captured
    for i in range(3):
        logger.info("line %d", i)
    assert lines(stream) == []  # kept, not yet written
    await after_the_flush_timer()
    assert lines(stream) == ["INFO line 0", "INFO line 1", "INFO line 2"]


async def test_a_warning_writes_what_was_kept_first_then_itself_at_once(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, _ = captured
    logger.info("before")
    logger.warning("trouble")
    assert lines(stream) == ["INFO before", "WARNING trouble"]


async def test_a_line_from_another_thread_keeps_the_order(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, _ = captured
    logger.info("on the loop")
    thread = threading.Thread(target=logger.info, args=("in a thread",))
    thread.start()
    thread.join()
    assert lines(stream) == ["INFO on the loop", "INFO in a thread"]


async def test_many_lines_are_written_before_the_timer(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, _ = captured
    for i in range(LoopBufferedHandler.MAX_LINES):
        logger.debug("n %d", i)
    assert len(lines(stream)) == LoopBufferedHandler.MAX_LINES


def test_without_a_loop_every_line_is_written_at_once(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, _ = captured
    logger.info("no loop here")
    assert lines(stream) == ["INFO no loop here"]


async def test_flush_writes_what_is_kept(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, handler = captured
    logger.info("at exit")
    handler.flush()  # what logging.shutdown() calls at exit
    assert lines(stream) == ["INFO at exit"]


async def test_lines_kept_on_another_loop_are_written_before_this_loops_own(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, _ = captured

    async def briefly() -> None:
        logger.info("on a handler thread's own loop")

    # A thread handler calling asyncio.run: its loop ends before its flush timer fires.
    thread = threading.Thread(target=asyncio.run, args=(briefly(),))
    thread.start()
    thread.join()
    logger.info("on the main loop")
    await after_the_flush_timer()
    assert lines(stream) == ["INFO on a handler thread's own loop", "INFO on the main loop"]


def test_a_broken_stream_never_makes_logging_raise(
    captured: tuple[logging.Logger, io.StringIO, LoopBufferedHandler],
) -> None:
    logger, stream, handler = captured
    stream.close()
    logging.raiseExceptions, before = False, logging.raiseExceptions
    try:
        logger.warning("into a closed stream")
        handler.flush()
    finally:
        logging.raiseExceptions = before
