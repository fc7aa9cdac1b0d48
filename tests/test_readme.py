"""The README's examples, run as a user runs them, must print what the README shows.

The walk through with curl, the Python client and the command line client are taken from
README.md as they stand (tests/readme_steps.py) and run in one bash session, in a temporary
directory holding the shipped config.toml: the walk through starts `python -m service`
itself. Only the port changes (`localhost:8000` and `127.0.0.1:8000` become a free port, and
the server is told that port through `SPOOL_SERVER__BIND`), so the test can run beside
others. A command that prints something must show it in the README (`# →` lines). The
session ends with the README's own graceful stop, and its log (the server's, and anything
else written to stderr) must be clean.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.config import load_settings
from service.handlers.registry import resolve_queue_handlers

from .conftest import ROOT, free_port
from .process_group import wait_then_end_group
from .readme_steps import Ran, Step, describe, matches, readme_sessions, session_script, split_steps

# Every line the server logs starts so (logs.py, the text format); a traceback or any other
# stray text on stderr does not.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO) ")
SESSION_TIMEOUT_S = 200

pytestmark = pytest.mark.timeout(SESSION_TIMEOUT_S + 30)


@dataclass
class Session:
    walkthrough: list[Ran]
    examples: list[Ran]  # the Python client and the command line client
    every_queue: list[Ran]  # one message to each queue of the shipped config
    stop: list[Ran]
    log: str

    @property
    def readme_steps(self) -> list[Ran]:
        return self.walkthrough + self.examples + self.stop


def curl_missing() -> str | None:
    if shutil.which("curl"):
        return None
    reason = "curl is not installed (apt-get install -y curl): the README's walk through uses it"
    if os.environ.get("SPOOL_REQUIRE_CURL") == "1":
        pytest.fail(f"SPOOL_REQUIRE_CURL=1 but {reason}")
    return reason


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    reason = curl_missing()
    if reason is not None:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("readme")
    shutil.copy(ROOT / "config.toml", home / "config.toml")
    walk, examples, stop = readme_sessions()
    # Beside the README's steps, one message to every queue of the shipped config, waited
    # for: the CLI's exit status is 0 only when it succeeded.
    queues = load_settings(home / "config.toml", environ={}).queues
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    every_queue = [
        Step(f"queue {name!r}", f"python -m service publish {name} '1' --wait 30 --url {url}", ())
        for name in queues
    ]
    steps = walk + examples + every_queue + stop
    (home / "session.sh").write_text(session_script(steps, port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env["SPOOL_SERVER__BIND"] = f"127.0.0.1:{port}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(home / "stdout", "wb") as out, open(home / "stderr", "wb") as err:
        bash = subprocess.Popen(
            ["bash", "session.sh"],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    # Whatever the session left running (a step that hung, a server whose stop failed) is in
    # bash's process group, and nothing may outlive the test; split_steps names the step
    # a session that timed out hung on.
    wait_then_end_group(bash, SESSION_TIMEOUT_S)
    log = (home / "stderr").read_text(errors="replace")
    ran = split_steps(steps, (home / "stdout").read_text(errors="replace"), log)
    a, b, c = len(walk), len(walk) + len(examples), len(walk) + len(examples) + len(every_queue)
    return Session(ran[:a], ran[a:b], ran[b:c], ran[c:], log)


def test_readme_examples_run_and_print_what_the_readme_shows(session: Session) -> None:
    problems: list[str] = []
    for ran in session.readme_steps:
        if ran.status != 0:
            problems.append(describe(ran, f"exit status {ran.status}"))
        elif ran.output and not ran.step.shown:
            problems.append(describe(ran, "prints, but the README shows nothing"))
        elif not matches(ran.step.shown, ran.output):
            problems.append(describe(ran, "prints something else than the README shows"))
    assert not problems, "\n\n".join(problems) + f"\n\nlog:\n{session.log}"


def test_readme_checksum_example_shows_the_real_digest() -> None:
    """The walk through publishes {"data": "hello", "rounds": 100000}; the digest it shows is
    the one the checksum handler computes (README.md once showed a made-up "5a1c…")."""
    from service.handlers import checksum

    digest = checksum({"data": "hello", "rounds": 100000})["sha256"]
    walk, _, _ = readme_sessions()
    assert any(digest in line for step in walk for line in step.shown), digest


def test_every_queue_of_the_shipped_config_succeeds(session: Session) -> None:
    assert session.every_queue
    for ran in session.every_queue:
        assert ran.status == 0, describe(ran, "the message did not succeed") + session.log


def test_the_shipped_config_logs_one_line_per_event_and_stops_gracefully(
    session: Session,
) -> None:
    """Start, the README's requests, a message to every queue and the README's stop: the log
    holds no traceback, no warning or error, nothing but log lines, and ends in a clean stop
    (the stop step's status is the server's exit status, from `wait`)."""
    log = session.log
    assert "Traceback" not in log, log
    # The server's stdout is the session's: a traceback printed there would sit between the
    # lines a step shows.
    printed = [line for ran in session.readme_steps + session.every_queue for line in ran.output]
    assert not [line for line in printed if "Traceback" in line], printed
    strays = [line for line in log.splitlines() if not LOG_LINE.match(line)]
    assert not strays, f"lines that are not routine log lines: {strays}\n\nlog:\n{log}"
    assert "service: serving on" in log and log.rstrip().endswith("service: stopped"), log
    assert session.stop and all(ran.status == 0 for ran in session.stop), session.stop


def test_the_shipped_webhook_example_is_a_valid_queue_once_uncommented(tmp_path: Path) -> None:
    """config.toml ships the webhooks queue commented out (with nothing to call it could only
    fail); uncommented, as a user would, it must be a queue that starts."""
    lines = (ROOT / "config.toml").read_text().splitlines()
    start = lines.index("# [queues.webhooks]")
    example = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        example.append(line.removeprefix("# "))
    config = tmp_path / "config.toml"
    config.write_text("\n".join(lines[:start] + example) + "\n")
    settings = load_settings(config, environ={})
    webhooks = settings.queues["webhooks"]
    assert webhooks.handler == "service.handlers:webhook"
    assert str(webhooks.options["url"]).startswith("https://")
    resolve_queue_handlers(settings.queues)  # raises, naming the key, if it could not start
