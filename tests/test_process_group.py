"""tests/process_group.py: the group is ended while its id is still its own."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from .process_group import wait_then_end_group


def gone(pid: int) -> bool:
    """No such process, or only its zombie (its parent has ended; init reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_the_group_is_killed_while_its_leader_still_holds_the_group_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the leader is reaped and the rest of its group has ended, its pid (the group's
    id) can be given to a new process, which may lead a group of its own (any test server,
    started with start_new_session): killpg must come before the reap, never after."""
    leader = subprocess.Popen(
        ["bash", "-c", "sleep 300 & echo $!; exit 0"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert leader.stdout is not None
    left_behind = int(leader.stdout.readline())
    leader.stdout.close()
    held_at_kill: list[bool] = []
    real_killpg = os.killpg

    def killpg(pgid: int, sig: int) -> None:
        # The leader's pid still names it (exited, not yet reaped): the id cannot be reused.
        held_at_kill.append(pgid == leader.pid and Path(f"/proc/{pgid}").exists())
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", killpg)
    wait_then_end_group(leader, 30)
    assert held_at_kill == [True]
    assert leader.returncode == 0
    deadline = time.monotonic() + 10
    while not gone(left_behind):
        assert time.monotonic() < deadline, "the group's other process was not killed"
        time.sleep(0.02)
