"""Ending what a test's subprocess left behind, in its process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time

POLL_S = 0.05


def wait_then_end_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Waits up to `timeout` for `process` (started with start_new_session: it leads its
    group) to end, then kills whatever is left in its group (a step that hung, a server
    whose stop failed), and only then reaps it.

    Reaping first would be a race: once the leader is reaped and the rest of its group has
    ended, its pid, the group's id, is free, and a new process may get it and lead a group
    of its own (any server a test starts with start_new_session); killpg would end that
    group instead. An exited leader not yet reaped still holds the id."""
    deadline = time.monotonic() + timeout
    while not exited(process.pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # nothing is left
    process.wait()


def exited(pid: int) -> bool:
    """Whether the child `pid` has ended, leaving it unreaped (WNOWAIT)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
