"""The threads that thread-mode handlers run in.

What ThreadPoolExecutor + run_in_executor do, minus what they cost the event loop per call:
no concurrent.futures.Future chained to an asyncio one (two futures, three callbacks and a
lock per call), and one wake-up of the loop for all the calls that finished while it was
busy rather than one each. Thread handlers are GIL-bound, so every microsecond the loop
spends per message is a microsecond no handler runs; this pool moves ~1.4 times the messages
of the stdlib pattern (tests/bench, B3).

It also does what ThreadPoolExecutor cannot: a call abandoned while it runs (its timeout
passed; a thread cannot be killed) gets its thread replaced at once, so the pool keeps
`size` threads taking work however many handlers hang, and the stuck thread ends when its
handler returns.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any

from .failures import HandlerExit as HandlerExit  # where it is raised, for its callers

# Job states, under the job's lock (the loop abandons, a worker starts and finishes).
PENDING, RUNNING, FINISHED = 0, 1, 2


class ThreadJob:
    """One call: the loop awaits `future`; a worker thread runs `fn` and fills `value`."""

    __slots__ = ("abandoned", "fn", "future", "lock", "ok", "state", "value")

    def __init__(self, fn: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future
        self.lock = threading.Lock()
        self.state = PENDING
        self.abandoned = False
        self.ok = False
        self.value: Any = None

    def finish(self) -> bool:
        """Mark the call finished; whether it was abandoned meanwhile (by the loop, while
        it ran: read under the lock, so exactly one side replaces the thread)."""
        with self.lock:
            self.state = FINISHED
            return self.abandoned


class HandlerThreads:
    """`size` daemon threads serving one event loop (the first that submits)."""

    def __init__(self, size: int, name: str = "spool-handler") -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[ThreadJob | None] = queue.SimpleQueue()
        self._done: collections.deque[ThreadJob] = collections.deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = 0
        self._closed = False
        self.abandoned = 0  # threads still running a call nobody waits for

    def submit(self, fn: Callable[[], Any]) -> ThreadJob:
        """Queue `fn` for a thread; await `job.future` for its return (or its exception)."""
        if self._closed:
            raise RuntimeError("HandlerThreads are closed")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                raise RuntimeError("HandlerThreads serve the one event loop that started them")
            self._loop = loop
            for _ in range(self._size):
                self._start_thread()
        job = ThreadJob(fn, loop.create_future())
        self._jobs.put(job)
        return job

    def abandon(self, job: ThreadJob) -> bool:
        """The caller stopped waiting for `job`. One not yet started never runs; True when
        it is running now and runs on, abandoned, while a fresh thread takes its place."""
        with job.lock:
            job.abandoned = True
            running = job.state == RUNNING
        if running:
            self.abandoned += 1
            if not self._closed:
                self._start_thread()
        return running

    def close(self) -> None:
        """Stop the threads once they are idle. Calls not yet started never run; threads
        running a handler finish it first (they are daemons: they never hold up the exit)."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self.abandon(job)
                job.future.cancel()
        for _ in range(self._size if self._loop is not None else 0):
            self._jobs.put(None)

    # ------------------------------------------------------------------ worker side
    def _start_thread(self) -> None:
        self._started += 1
        threading.Thread(
            target=self._work, name=f"{self._name}-{self._started}", daemon=True
        ).start()

    def _work(self) -> None:
        jobs, done = self._jobs, self._done
        while True:
            job = jobs.get()
            if job is None:
                return
            with job.lock:
                if job.abandoned:
                    continue
                job.state = RUNNING
            try:
                job.value = job.fn()
                job.ok = True
            except Exception as exc:
                job.value = exc
            except BaseException as exc:  # SystemExit, KeyboardInterrupt: still just a failure
                job.value = HandlerExit(exc)
            if job.finish():
                # A fresh thread took this one's place when the call was abandoned.
                self._tell_loop(self._thread_returned)
                return
            done.append(job)
            # Finished jobs queue up in `done`; the loop is woken once for all of them. The
            # flag is cleared before the loop drains, so a job appended after the drain
            # began always finds it clear and schedules the next one.
            if not self._drain_scheduled:
                self._drain_scheduled = True
                self._tell_loop(self._drain)

    def _tell_loop(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass  # the loop is closed: nobody waits for this any more

    # ------------------------------------------------------------------ loop side
    def _drain(self) -> None:
        self._drain_scheduled = False
        done = self._done
        while done:
            job = done.popleft()
            future = job.future
            if future.done():
                continue  # its timeout cancelled it just as it returned
            if job.ok:
                future.set_result(job.value)
            else:
                future.set_exception(job.value)

    def _thread_returned(self) -> None:
        self.abandoned -= 1
