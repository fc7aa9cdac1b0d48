"""The README's examples as steps a shell can run, and what the README shows they print.

A command's output is shown in README.md as comment lines under it, `# → text`. Each shown
line must be a line of the output, in the order shown (lines not shown may come between),
where `…` stands for anything that differs from run to run: ids, times.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .conftest import ROOT

README = ROOT / "README.md"
SHOWN = "# →"
STEP_END = "@@spool-readme-step-end"


@dataclass(frozen=True, slots=True)
class Step:
    where: str  # for failure messages: the README section and line
    command: str  # shell text, run as it stands (but for the port)
    shown: tuple[str, ...]  # the output lines the README shows for it


@dataclass(frozen=True, slots=True)
class Ran:
    step: Step
    status: int
    output: list[str]


def section(title: str) -> tuple[int, list[str]]:
    """The lines under `## title` up to the next `## ` heading, and the first one's number."""
    lines = README.read_text().splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start + 1, lines[start:end]


def fenced(title: str, language: str) -> list[tuple[int, list[str]]]:
    """The section's ```language blocks: (README line number of the first line, lines)."""
    first, lines = section(title)
    blocks: list[tuple[int, list[str]]] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == f"```{language}":
            end = lines.index("```", i + 1)
            blocks.append((first + i + 1, lines[i + 1 : end]))
            i = end
        i += 1
    return blocks


def shown_text(line: str) -> str | None:
    stripped = line.strip()
    if not stripped.startswith(SHOWN):
        return None
    return stripped.removeprefix(SHOWN).removeprefix(" ")


def shell_steps(title: str, block: tuple[int, list[str]]) -> list[Step]:
    """One step per command (backslash continuations joined); `# →` lines under a command are
    what it prints; other comments and blank lines are for the reader."""
    first, lines = block
    steps: list[tuple[str, str, list[str]]] = []
    i = 0
    while i < len(lines):
        line, number = lines[i], first + i
        i += 1
        shown = shown_text(line)
        if shown is not None:
            assert steps, f"README.md:{number}: output shown before any command"
            steps[-1][2].append(shown)
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command = [line]
        while command[-1].endswith("\\") and i < len(lines):
            command.append(lines[i])
            i += 1
        steps.append((f"{title}, README.md:{number}", "\n".join(command), []))
    return [Step(where, command, tuple(shown)) for where, command, shown in steps]


def python_step(title: str, block: tuple[int, list[str]]) -> Step:
    """A python block runs as one script; its `# →` lines are what the whole block prints."""
    first, lines = block
    code = "\n".join(lines)
    shown = tuple(s for s in map(shown_text, lines) if s is not None)
    return Step(
        f"{title}, README.md:{first}", f"python - <<'README_PYTHON'\n{code}\nREADME_PYTHON", shown
    )


def matches(shown: Sequence[str], output: Sequence[str]) -> bool:
    """Every shown line is a line of the output, in order; `…` stands for any text."""
    rest = iter(output)
    for line in shown:
        pattern = re.compile(".*".join(re.escape(part) for part in line.split("…")))
        if not any(pattern.fullmatch(candidate) for candidate in rest):
            return False
    return True


def on_port(command: str, port: int) -> str:
    return re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", rf"\g<1>:{port}", command)


def readme_sessions() -> tuple[list[Step], list[Step], list[Step]]:
    """(the walk through, the client examples, the stop), as the README has them."""
    walk_title = "A walk through with curl"
    # Its first block starts the server and walks through; the blocks after it stop it.
    first, *rest = fenced(walk_title, "sh")
    walk = shell_steps(walk_title, first)
    stop = [step for block in rest for step in shell_steps(walk_title, block)]
    examples = [python_step("Python client", b) for b in fenced("Python client", "python")]
    for block in fenced("Command line client", "sh"):
        examples += shell_steps("Command line client", block)
    return walk, examples, stop


def split_steps(steps: Sequence[Step], stdout: str, log: str) -> list[Ran]:
    """The session's output cut at the marker lines session_script() wrote."""
    ran: list[Ran] = []
    output: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(f"{STEP_END} "):
            _, index, status = line.split()
            assert int(index) == len(ran), stdout
            while output and not output[-1]:
                output.pop()  # the newline printed before the marker
            ran.append(Ran(steps[len(ran)], int(status), output))
            output = []
        else:
            output.append(line.rstrip())
    if len(ran) < len(steps):
        raise AssertionError(
            f"the session ended in {steps[len(ran)].where}:\n  $ {steps[len(ran)].command}\n"
            f"stdout:\n{stdout}\nlog:\n{log}"
        )
    return ran


def describe(ran: Ran, problem: str) -> str:
    shown = "\n".join(f"    {line}" for line in ran.step.shown) or "    (nothing)"
    output = "\n".join(f"    {line}" for line in ran.output) or "    (nothing)"
    return (
        f"{ran.step.where}: {problem}\n  $ {ran.step.command}\n"
        f"  README shows:\n{shown}\n  it printed:\n{output}"
    )


def session_script(steps: Sequence[Step], port: int) -> str:
    """The steps as one bash script, each followed by a line with its index and exit status
    (after a newline: curl's output, for one, does not end in one)."""
    script = ["set -u"]
    for index, step in enumerate(steps):
        script.append(on_port(step.command, port))
        script.append(f"printf '\\n{STEP_END} {index} %s\\n' \"$?\"")
    return "\n".join(script) + "\n"
