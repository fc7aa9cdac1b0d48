"""Schemathesis fuzzes a live server from its own /openapi.json: no 5xx, no response that
breaks the document (status codes, content types, headers, bodies)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Server, toml_config

# The budget, plus a long-poll (up to 60 s) still in flight when it runs out, plus start-up.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Kept small so CI stays bounded; schemathesis prints its seed to replay a failure.
BUDGET_S = 45
MAX_EXAMPLES = 15
# A fixed seed makes CI replayable: the same run passes or fails every time. Hunting for new
# failures is a matter of other seeds: SPOOL_SCHEMATHESIS_SEED=random (or a number).
DEFAULT_SEED = "20261126"
# Checks left out, on purpose:
# - positive_data_acceptance: Spool refuses some documents JSON Schema cannot rule out
#   (duplicate keys, integers beyond 64 bits, 1.0 where an integer is expected, nesting
#   deeper than 64), each with a clear 400/422.
# - use_after_free: DELETE cancels a message, which stays readable as "cancelled" (SPEC).
EXCLUDED_CHECKS = "positive_data_acceptance,use_after_free"


def seed_option() -> list[str]:
    seed = os.environ.get("SPOOL_SCHEMATHESIS_SEED", DEFAULT_SEED)
    return [] if seed == "random" else [f"--seed={seed}"]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    beside = Path(sys.executable).parent / "st"  # the venv's, even when it is not activated
    st = str(beside) if beside.exists() else shutil.which("st")
    if st is None:
        if os.environ.get("SPOOL_REQUIRE_SCHEMATHESIS"):
            pytest.fail("schemathesis is required (SPOOL_REQUIRE_SCHEMATHESIS is set)")
        pytest.skip("schemathesis is not installed (pip install schemathesis; .ci/run does)")
    queues = """
[queues.default]
handler = "tests.handlers:echo"
[queues.slow]
handler = "tests.handlers:async_sleep"
mode = "async"
"""
    server = server_factory(toml_config(tmp_path, queues, "[server]\nmax_body_bytes = 65536\n"))
    server.start()
    command = [
        st,
        "run",
        f"{server.url}/openapi.json",
        "--checks=all",
        f"--exclude-checks={EXCLUDED_CHECKS}",
        # The coverage phase crashes inside schemathesis 4.x on this document (KeyError in
        # its own coverage walker), which says nothing about the service.
        "--phases=examples,fuzzing,stateful",
        f"--max-examples={MAX_EXAMPLES}",
        f"--max-time={BUDGET_S}",
        # Long-polls legitimately take up to 60 s.
        "--request-timeout=62",
        "--max-response-time=62",
        # One worker: two threads in hypothesis can trip a CPython 3.11 race in ast.parse
        # ("AST constructor recursion depth mismatch"), a crash of the tool, not the service.
        "--workers=1",
        *seed_option(),
        "--exclude-path-regex=^/v1/events",
        f"--report-dir={tmp_path / 'report'}",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=BUDGET_S + 70,
        env=os.environ.copy(),
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert server.stop() == 0
    assert "Traceback" not in server.log()
