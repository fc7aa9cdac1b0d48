"""The open files limit: raised to the hard limit at start, and answered for when reached.

Every connection holds a file descriptor. Most systems start a process with a soft limit
of 1024 under a far higher hard limit that the process may raise itself to, so `serve`
does. At the limit, asyncio's accept() fails with EMFILE: asyncio then logs "socket.accept()
out of system resource" with a traceback (many times a second: its accept loop carries on
after the failure) and stops accepting for a second, while the clients in the listen
backlog hang with no answer. OutOfFilesGuard takes that event instead: it logs one warning
that names the limit and what to do, at most every WARN_EVERY_S, and answers the clients
waiting in the backlog with a 503 problem+json and `Retry-After: 1` through one fd kept in
reserve for that purpose (the way nginx and libuv survive EMFILE), so they hear "try
again" rather than waiting on a stalled server.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from .errors import Unavailable

log = logging.getLogger(__name__)

WARN_EVERY_S = 10.0
# Answer at most this many waiting clients per failed accept: a bound on the loop's time,
# about Hypercorn's listen backlog (100). The rest wait for asyncio's retry a second later.
MAX_ANSWERED_PER_EVENT = 128
# What a shed client has sent is read before the close, in at most this many reads.
MAX_DRAIN_READS = 4
# Linux's ceiling for RLIMIT_NOFILE when the hard limit is "unlimited" (fs.nr_open).
NR_OPEN_PATH = "/proc/sys/fs/nr_open"
ACCEPT_FAILURE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RETRY_AFTER_S = 1  # asyncio retries accepting after a second (ACCEPT_RETRY_DELAY)

ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def open_files_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (as far as the kernel allows); returns
    the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if soft == resource.RLIM_INFINITY or soft >= target:
        log.debug("open files limit %d", soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
        return soft
    log.info("open files limit raised from %d to %d (the hard limit)", soft, target)
    return target


def _nr_open() -> int:
    try:
        with open(NR_OPEN_PATH) as nr_open:
            return int(nr_open.read())
    except (OSError, ValueError):
        return 1024 * 1024  # the kernel's default nr_open


def _unavailable_answer() -> bytes:
    body = msgspec.json.encode(
        {
            "type": f"https://spool.dev/problems/{Unavailable.slug}",
            "title": Unavailable.title,
            "status": Unavailable.status,
            "detail": "the server is out of file descriptors; retry shortly",
        }
    )
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\n"
        f"content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        f"retry-after: {RETRY_AFTER_S}\r\n"
        f"connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no fd to spare right now: the next accept failure tries again


def _answer(conn: socket.socket, answer: bytes) -> None:
    """Send the 503 and close, without ever blocking the loop."""
    try:
        conn.setblocking(False)
        conn.send(answer)  # a few hundred bytes: an empty send buffer takes them whole
        conn.shutdown(socket.SHUT_WR)
        # Read what the request has sent so far: closing a socket with unread data sends
        # a RST, which can make the client drop the answer before reading it.
        for _ in range(MAX_DRAIN_READS):
            if not conn.recv(65536):
                break
    except OSError:
        pass  # nothing more to read (BlockingIOError), or the client is already gone


class OutOfFilesGuard:
    """The loop's exception handler for a failed accept(); hands anything else on."""

    def __init__(self, fallback: ExceptionHandler | None) -> None:
        self._fallback = fallback
        self._reserve = _open_reserve()
        self._answer = _unavailable_answer()
        self._last_warning_at: float | None = None
        self._answered = 0  # since the last warning
        self._failures = 0  # since the last warning

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        listener = context.get("socket")
        if (
            not isinstance(exc, OSError)
            or exc.errno not in ACCEPT_FAILURE_ERRNOS
            or listener is None
            or not str(context.get("message", "")).startswith("socket.accept()")
        ):
            if self._fallback is not None:
                self._fallback(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._failures += 1
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            self._answered += self._answer_waiting_clients(listener.fileno())
        self._warn(loop.time(), exc)

    def close(self) -> None:
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    def _answer_waiting_clients(self, listener_fd: int) -> int:
        if self._reserve is None:
            self._reserve = _open_reserve()
            return 0
        os.close(self._reserve)  # its number is the one accept() takes next
        self._reserve = None
        answered = 0
        # A second socket object over asyncio's listening fd (no new fd): the event gives
        # a TransportSocket, which does not accept.
        listener = socket.socket(fileno=listener_fd)
        try:
            listener.setblocking(False)
            while answered < MAX_ANSWERED_PER_EVENT:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    break  # none waiting (BlockingIOError), or the freed fd is taken
                with conn:
                    _answer(conn, self._answer)
                answered += 1
        finally:
            listener.detach()  # asyncio's fd: not this object's to close
            self._reserve = _open_reserve()
        return answered

    def _warn(self, now: float, exc: OSError) -> None:
        if self._last_warning_at is not None and now - self._last_warning_at < WARN_EVERY_S:
            return
        self._last_warning_at = now
        if exc.errno == errno.EMFILE:
            log.warning(
                "out of file descriptors (open files limit %d reached): new connections "
                "are answered 503 until others close (since the last warning: %d failed "
                "accepts, %d clients answered). Raise the limit (ulimit -n; docker run "
                "--ulimit nofile=N:N; systemd LimitNOFILE=N) or hold fewer connections open",
                open_files_limit(),
                self._failures,
                self._answered,
            )
        elif exc.errno == errno.ENFILE:
            log.warning(
                "out of file descriptors: the system's file table is full (ENFILE; this "
                "process's open files limit is %d): new connections are answered 503 "
                "until files close (%d since the last warning). Raise fs.file-max or find "
                "the process holding them (ulimit -n does not help here)",
                open_files_limit(),
                self._answered,
            )
        else:
            log.warning(
                "out of memory for new connections (%s): they wait until memory frees "
                "up (%d failed accepts since the last warning)",
                exc.strerror,
                self._failures,
            )
        self._answered = self._failures = 0


@contextmanager
def guard_accept(loop: asyncio.AbstractEventLoop) -> Iterator[OutOfFilesGuard]:
    """Within it, a failed accept() on `loop` is handled by an OutOfFilesGuard."""
    previous = loop.get_exception_handler()
    guard = OutOfFilesGuard(previous)
    loop.set_exception_handler(guard)
    try:
        yield guard
    finally:
        loop.set_exception_handler(previous)
        guard.close()
