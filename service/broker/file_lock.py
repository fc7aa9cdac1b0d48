"""One node per data file: the sqlite journal and the memory snapshot are each one node's.

Two nodes on one file would each hold their own queues in it: the journal's writes would
interleave, and of two snapshots the last stop's would silently replace the other's.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import StartupError


class Lock:
    """An exclusive flock on `<file>.lock`, held from start to close.

    The kernel drops it when the process dies however it dies, so a kill -9 never leaves
    a stale lock behind; the pid inside is only there for the message."""

    def __init__(self, data_path: Path, key: str, rule: str) -> None:
        self.path = data_path.with_name(data_path.name + ".lock")
        self._data_path = data_path
        self._key = key  # the config key that names the file, e.g. broker.sqlite_path
        self._rule = rule  # why one node only, for the message
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # as the first write would
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise StartupError(
                f"{self._key}: {str(self._data_path)!r} is in use by another Spool process "
                f"(pid {holder}); {self._rule}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
