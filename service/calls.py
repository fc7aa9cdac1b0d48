"""How each mode calls a handler: the code that runs in a worker thread, a worker process
or the handler's own task. Whatever a handler raises, SystemExit, KeyboardInterrupt and any
other BaseException included, is a failed attempt (a HandlerFailure or HandlerExit), never
the end of the worker, the consumer or the service.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from .failures import HandlerExit, HandlerSnoozed, encode_result, failure_of
from .handlers.registry import ResolvedHandler, resolve_cached
from .model import HandlerContext
from .progress import PipeSink

# Worker processes run below the loop's priority, so CPU-bound handlers never starve it.
WORKER_NICENESS = 10


def call_sync(handler: ResolvedHandler, body: bytes, ctx: HandlerContext) -> bytes:
    """Runs in a worker thread or process: decode, call, encode, so the loop does none of it.
    Whatever the handler raises, SystemExit and KeyboardInterrupt included, comes out as a
    HandlerFailure, described here rather than on the loop."""
    try:
        value = msgspec.json.decode(body)
        result = handler.fn(value, ctx) if handler.wants_context else handler.fn(value)
    except BaseException as exc:
        raise failure_of(exc) from None
    return encode_result(result)


# The worker's end of its slot's progress pipe (init_worker): one per worker process,
# which runs one handler at a time.
_progress_sink: PipeSink | None = None


def call_in_process(ref: str, body: bytes, ctx: HandlerContext) -> tuple[bool, Any]:
    """Runs in a worker process. Never raises: an exception may not pickle, and a
    BaseException would end the server once concurrent.futures raised it there; so a
    failure comes back as (False, (type, message, traceback))."""
    sink = _progress_sink
    if sink is not None:
        ctx = replace(ctx, sink=sink)
    try:
        return True, call_sync(resolve_cached(ref), body, ctx)
    except BaseException as exc:
        failure = failure_of(exc)
        if isinstance(failure, HandlerSnoozed):
            return False, failure.retry_after_s  # a number, where a failure is a tuple
        return False, (failure.type_name, failure.message, failure.tb)
    finally:
        if sink is not None:
            _flush_progress(sink)


def _flush_progress(sink: PipeSink) -> None:
    """The attempt's last report, sent before its result (the server reads the pipe dry
    before it records the outcome)."""
    try:
        sink.flush()
    except (OSError, ValueError):
        pass  # the server closed the pipe: it no longer waits for this attempt


async def call_async(handler: ResolvedHandler, value: Any, ctx: HandlerContext) -> Any:
    """An async handler's call, as its task runs it. asyncio re-raises SystemExit and
    KeyboardInterrupt from a task straight out of the event loop, which would end the
    server: here they (and any other BaseException) become a HandlerExit, a failed attempt.
    CancelledError passes: it is how a timeout or a stop ends the handler."""
    try:
        return await (handler.fn(value, ctx) if handler.wants_context else handler.fn(value))
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise HandlerExit(exc) from None


def init_worker(progress: Connection | None = None) -> None:
    """A worker process's start: keeps `progress`, the pipe ctx.progress writes to. It ignores SIGINT: a Ctrl-C in a terminal reaches the whole
    process group, and the server turns it into a graceful stop that lets a running handler
    finish; a KeyboardInterrupt in the worker would fail its attempt (or kill an idle one)."""
    global _progress_sink
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority()
    if progress is not None:
        _progress_sink = PipeSink(progress)


def _lower_priority() -> None:
    """Niceness 10 (absolute, so running it twice changes nothing: os.nice would add up),
    and on Linux the idle policy too: a woken task always preempts an idle-policy one, so
    the loop gets a CPU at once when a request comes in, where niceness alone left it
    waiting for a worker's slice (B5 process mode met its target in 5 of 6 runs with it,
    2 of 5 without). The workers still get every CPU the rest of the machine leaves."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, max(current, WORKER_NICENESS))
    except OSError:
        pass
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        pass
