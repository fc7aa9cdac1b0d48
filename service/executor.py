"""Where handler code runs, so the event loop never does blocking work.

- async handlers: a task on the loop, cancelled at the timeout.
- thread handlers: HandlerThreads (threads.py), a leaner ThreadPoolExecutor for the loop. A
  thread cannot be killed: one that overruns is abandoned (counted) and a fresh thread takes
  its place at once, so stuck handlers never silently starve the queue.
- process handlers: N single-worker process pools ("slots") through run_in_executor. One
  slot per running handler means an overrun or a crash costs exactly that worker: it is
  terminated and the slot gets a fresh pool, while the other slots keep running.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from .calls import call_async, call_in_process, call_sync, init_worker
from .config import ExecutorSettings
from .failures import HandlerFailure as HandlerFailure
from .failures import HandlerSnoozed, encode_result, failure_of
from .failures import HandlerTimeout as HandlerTimeout
from .grace import ASYNC_CANCEL_GRACE_S, POOL_CLOSE_TIMEOUT_S
from .handlers.registry import ResolvedHandler
from .model import HandlerContext
from .progress import pipe_reader
from .threads import HandlerThreads
from .tracing import in_trace

log = logging.getLogger(__name__)

# /readyz fails once this many times `executor.threads` handler threads are stuck.
LEAKING_THREADS_FACTOR = 4


def _settle(future: asyncio.Future[None], *_: object) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(slots=True)
class _ProcessSlot:
    pool: ProcessPoolExecutor
    # The pipe its worker's ctx.progress writes to (calls.PipeSink): one per pool, so a
    # killed worker takes only its own pipe with it, whatever it was writing.
    progress: Connection
    progress_end: Connection  # the worker's end, closed with the pool
    # A fresh pool's first call (a no-op) that starts its worker: the next handler waits for
    # it before its timeout starts, so a worker's start-up is never a handler's overrun.
    starting: Future[Any] | None = None


class Executors:
    def __init__(self, settings: ExecutorSettings) -> None:
        self._settings = settings
        self._threads = HandlerThreads(settings.threads)
        self._mp = multiprocessing.get_context("forkserver")
        self._free_slots: asyncio.Queue[_ProcessSlot] | None = None
        self._slots: list[_ProcessSlot] = []
        # The manager threads of pools whose worker was killed, while they close the pools'
        # queues: shutdown() waits for them (see _retire).
        self._closing: list[weakref.ref[threading.Thread]] = []
        self.busy = {"thread": 0, "process": 0}
        self.process_restarts = 0

    def _new_process_slot(self) -> _ProcessSlot:
        reader, writer = self._mp.Pipe(duplex=False)
        pool = ProcessPoolExecutor(
            1, mp_context=self._mp, initializer=init_worker, initargs=(writer,)
        )
        return _ProcessSlot(pool, reader, writer)

    def _ensure_slots(self) -> asyncio.Queue[_ProcessSlot]:
        if self._free_slots is None:
            self._free_slots = asyncio.Queue()
            for _ in range(self._settings.processes):
                slot = self._new_process_slot()
                self._slots.append(slot)
                self._free_slots.put_nowait(slot)
        return self._free_slots

    @property
    def abandoned_threads(self) -> int:
        """Threads still running a handler that overran its timeout."""
        return self._threads.abandoned

    def health(self) -> dict[str, object]:
        # Every abandoned thread is replaced, so work goes on; but this many stuck handlers
        # means threads are leaking, and a restart is what frees them.
        leaking = self.abandoned_threads >= LEAKING_THREADS_FACTOR * self._settings.threads
        return {
            "ok": not leaking,
            "threads": self._settings.threads,
            "abandoned_threads": self.abandoned_threads,
            "processes": self._settings.processes,
        }

    async def run(
        self, mode: str, handler: ResolvedHandler, body: bytes, ctx: HandlerContext, timeout: float
    ) -> bytes:
        """The encoded result. Raises only HandlerFailure (HandlerTimeout), for a failed
        attempt whatever the handler did, or CancelledError, when the caller is cancelled."""
        if handler.is_async:
            return await self._run_async(handler, body, ctx, timeout)
        if mode == "process":
            return await self._run_process(handler, body, ctx, timeout)
        return await self._run_thread(handler, body, ctx, timeout)

    async def _run_async(
        self, handler: ResolvedHandler, body: bytes, ctx: HandlerContext, timeout: float
    ) -> bytes:
        value = msgspec.json.decode(body)
        loop = asyncio.get_running_loop()
        task: asyncio.Task[Any] = loop.create_task(call_async(handler, value, ctx))
        # asyncio.wait({task}, timeout) without its sets, closures and bookkeeping: one
        # future that the task's end or the timer settles, whichever comes first.
        settled = loop.create_future()
        task.add_done_callback(partial(_settle, settled))
        timer = loop.call_later(timeout, _settle, settled)
        try:
            await settled
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            timer.cancel()
        if not task.done():
            task.cancel()
            # A handler that ignores cancellation is left to itself after a short grace.
            await asyncio.wait({task}, timeout=ASYNC_CANCEL_GRACE_S)
            raise HandlerTimeout(timeout)
        if task.cancelled():
            # Neither its timeout nor our caller cancelled it: the handler raised
            # CancelledError itself. A failure of its own, not a stop of its consumer.
            raise HandlerFailure("CancelledError", "the handler was cancelled, not by Spool")
        failed = task.exception()
        if failed is not None:
            raise failure_of(failed) from None
        return encode_result(task.result())

    async def _run_thread(
        self, handler: ResolvedHandler, body: bytes, ctx: HandlerContext, timeout: float
    ) -> bytes:
        job = self._threads.submit(in_trace(partial(call_sync, handler, body, ctx), ctx.trace))
        fut = job.future
        # The timeout cancels the future we await (never the task): one timer, no extra task
        # or waiter per message, which is what asyncio.wait would cost.
        timer = fut.get_loop().call_later(timeout, fut.cancel)
        self.busy["thread"] += 1
        try:
            result: bytes = await fut
            return result
        except asyncio.CancelledError:
            self._threads.abandon(job)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a graceful stop's deadline: the thread runs on, abandoned like an overrun
            raise HandlerTimeout(timeout) from None
        except Exception as exc:  # the handler's own, or a HandlerExit
            raise failure_of(exc) from None
        finally:
            timer.cancel()
            self.busy["thread"] -= 1

    async def _run_process(
        self, handler: ResolvedHandler, body: bytes, ctx: HandlerContext, timeout: float
    ) -> bytes:
        free = self._ensure_slots()
        slot = await free.get()
        loop = asyncio.get_running_loop()
        self.busy["process"] += 1
        try:
            if slot.starting is not None:
                starting, slot.starting = slot.starting, None
                try:
                    await asyncio.wrap_future(starting)
                except BrokenProcessPool:
                    self._replace(slot)
                    raise HandlerFailure(
                        "WorkerCrashed", "a fresh worker process died as it started"
                    ) from None
            fut = loop.run_in_executor(slot.pool, partial(call_in_process, handler.ref, body, ctx))
            # The worker's progress reports are read on the loop while its attempt runs
            # (the pipe is this slot's own; _replace closes it only after this removal).
            reading = pipe_reader(slot.progress, ctx)
            progress_fd = slot.progress.fileno()
            loop.add_reader(progress_fd, reading)
            try:
                done, _ = await asyncio.wait({fut}, timeout=timeout)
            except asyncio.CancelledError:
                loop.remove_reader(progress_fd)
                fut.cancel()  # its worker is killed: nobody will read the broken pool's error
                # Only a stop cancels a consumer: a worker started now would only be killed.
                self._replace(slot, start=False)
                raise
            loop.remove_reader(progress_fd)
            if not done:
                fut.cancel()
                self._replace(slot)
                raise HandlerTimeout(timeout)
            reading()  # what the worker sent before its result (it flushes first)
            try:
                ok, value = fut.result()
            except BrokenProcessPool:
                self._replace(slot)
                raise HandlerFailure(
                    "WorkerCrashed", "the worker process died while running the handler"
                ) from None
            except asyncio.CancelledError:
                raise  # the pool was shut down under it: a stop, as above
            except BaseException as exc:
                # call_in_process never raises, but concurrent.futures would hand any
                # BaseException of the worker's (SystemExit too) to this process to raise.
                raise failure_of(exc) from None
        finally:
            self.busy["process"] -= 1
            free.put_nowait(slot)
        if ok:
            return bytes(value)
        if isinstance(value, float):  # call_in_process: the handler snoozed the message
            raise HandlerSnoozed(value)
        type_name, message, tb = value
        raise HandlerFailure(type_name, message, tb)

    def _replace(self, slot: _ProcessSlot, *, start: bool = True) -> None:
        """Terminate the slot's worker (overrun, crashed or interrupted) and give the slot a
        fresh pool, its worker started now unless a stop interrupted the handler."""
        self._retire(slot.pool)
        _close_pipe(slot)
        fresh = self._new_process_slot()
        slot.pool, slot.progress, slot.progress_end = fresh.pool, fresh.progress, fresh.progress_end
        if start:
            slot.starting = slot.pool.submit(os.getpid)  # start the new worker now, not at need
        self.process_restarts += 1

    def _retire(self, pool: ProcessPoolExecutor) -> None:
        """Kill the pool's worker and shut the pool down without waiting. Its manager thread
        then closes the pool's queues, and until it ends it holds their semaphores: shutdown()
        waits for it, or multiprocessing's resource tracker, stopped at exit, reports them
        leaked and the interpreter's own clean-up prints a traceback for each."""
        # Read before shutdown(), which forgets it (so a later shutdown(wait=True) of the
        # same pool joins nothing). A weak reference: an ended thread keeps the queues too.
        manager = getattr(pool, "_executor_manager_thread", None)
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        self._closing = [ref for ref in self._closing if _alive(ref)]
        if manager is not None:
            self._closing.append(weakref.ref(manager))

    def warm_up(self) -> list[Future[Any]]:
        """Start the worker processes now rather than on the first message."""
        self._ensure_slots()
        for slot in self._slots:
            if slot.starting is None:
                slot.starting = slot.pool.submit(os.getpid)
        return [slot.starting for slot in self._slots if slot.starting is not None]

    def shutdown(self) -> None:
        """Stop every worker and wait, at most POOL_CLOSE_TIMEOUT_S in all, until every pool
        (those retired on the way included) has closed its queues."""
        self._threads.close()
        for slot in self._slots:
            self._retire(slot.pool)
            _close_pipe(slot)
        self._slots.clear()
        self._free_slots = None
        deadline = time.monotonic() + POOL_CLOSE_TIMEOUT_S
        for ref in self._closing:
            manager = ref()
            if manager is not None:
                manager.join(max(0.0, deadline - time.monotonic()))
        still_closing = sum(_alive(ref) for ref in self._closing)
        self._closing.clear()
        if still_closing:
            log.warning("%d process pools still closing at exit (semaphores leak)", still_closing)


def _close_pipe(slot: _ProcessSlot) -> None:
    slot.progress.close()
    slot.progress_end.close()


def _alive(ref: weakref.ref[threading.Thread]) -> bool:
    thread = ref()
    return thread is not None and thread.is_alive()
