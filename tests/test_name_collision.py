"""Another package named `service` beside Spool: `python -m service` says so in one line
instead of running someone else's code or failing with a confusing ImportError."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

SHADOWED = "spool: another package named 'service' shadows Spool"
HOW_TO_FIX = "virtual environment of its own"


def run(
    cwd: Path, pythonpath: list[Path], *args: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env["PYTHONPATH"] = os.pathsep.join(map(str, pythonpath))
    return subprocess.run(
        [sys.executable, *flags, "-m", "service", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    for needle in needles:
        assert needle in line, line
    return line


@pytest.mark.parametrize("args", [["check-config"], [], ["queues"]])
def test_a_package_first_on_the_path_that_extends_into_spool_is_named(
    tmp_path: Path, args: list[str]
) -> None:
    """An old-style namespace package (pkgutil.extend_path) first on PYTHONPATH: Python runs
    Spool's __main__ under the other package's __init__."""
    other = tmp_path / "first" / "service"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text(
        "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n"
    )
    result = run(tmp_path, [tmp_path / "first", ROOT], *args)
    line = one_line(result, SHADOWED, str(other / "__init__.py"), HOW_TO_FIX)
    assert str(ROOT / "service") in line


def test_an_init_overwritten_by_another_distribution_is_named(tmp_path: Path) -> None:
    """Two distributions installed into one `service` directory: the other's __init__.py
    replaced Spool's (a copy of Spool's package stands in for site-packages)."""
    merged = tmp_path / "site" / "service"
    shutil.copytree(ROOT / "service", merged, ignore=shutil.ignore_patterns("__pycache__"))
    (merged / "__init__.py").write_text('"""Another project\'s service package."""\n')
    result = run(tmp_path, [tmp_path / "site"], "check-config")
    one_line(result, SHADOWED, str(merged / "__init__.py"), "create_app", HOW_TO_FIX)


@pytest.mark.parametrize("listed_in", ["top_level.txt", "RECORD"])
def test_another_distribution_owning_service_is_named(tmp_path: Path, listed_in: str) -> None:
    """pip keeps no record of whose files a directory holds: both distributions' metadata
    claim `service`, which is what is checked (a real dist-info on PYTHONPATH)."""
    info = tmp_path / "site" / "other_service-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-service\nVersion: 1.0\n")
    record = "service/__init__.py,,\nservice/db.py,,\n" if listed_in == "RECORD" else ""
    (info / "RECORD").write_text(record + "other_service-1.0.dist-info/METADATA,,\n")
    if listed_in == "top_level.txt":
        (info / "top_level.txt").write_text("service\n")
    result = run(ROOT, [tmp_path / "site"], "check-config")
    one_line(result, "spool: the distribution other-service also installs", HOW_TO_FIX)


def test_a_plain_package_first_on_the_path_gets_pythons_error_the_readme_quotes(
    tmp_path: Path,
) -> None:
    """One without __main__ keeps Python from reaching Spool at all, when Spool is installed
    as a wheel: what Python prints then is quoted in the README, which says what it means.
    (-S leaves out site-packages, and with it the finder of this checkout's editable
    install, which would find Spool's __main__ under the other package: the first test.)"""
    other = tmp_path / "first" / "service"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    result = run(tmp_path, [tmp_path / "first"], "check-config", flags=("-S",))
    assert result.returncode == 1
    quoted = "'service' is a package and cannot be directly executed"
    assert quoted in result.stderr
    assert quoted in (ROOT / "README.md").read_text()


def test_spool_run_from_anywhere_is_not_taken_for_another(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[queues.q]\nhandler = "service.handlers:echo"\n')
    result = run(tmp_path, [], "check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
