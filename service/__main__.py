"""python -m service → cli.main(), once `service` is known to be Spool's own package.

The name is a common one. Another `service` first on the path (a project's own package in
the working directory, a PYTHONPATH entry) is imported in Spool's place, and another
distribution installed into the same environment writes its files into the same
`service` directory as Spool's, overwriting those they share. Either way what follows is
someone else's code or a confusing ImportError, so this is checked first, with the
standard library only, and reported in one line.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

# What Spool's service/__init__.py defines: another package's __init__ would not.
SPOOL_SURFACE = ("Runtime", "Settings", "__version__", "create_app", "load_settings")
SPOOL_DISTRIBUTION = "spool"
HOW_TO_FIX = (
    "give Spool a virtual environment of its own and run it from a directory that holds "
    "no other 'service' package, with none on PYTHONPATH (README, Run it)"
)


def main() -> int:
    problem = foreign_service()
    if problem:
        print(f"spool: {problem}", file=sys.stderr)
        return 2
    from .cli import main as cli_main

    return cli_main()


def foreign_service() -> str | None:
    """What makes `service` not (only) Spool, in one line; None when it is Spool alone."""
    here = os.path.dirname(os.path.realpath(__file__))
    package = sys.modules.get("service")
    init = getattr(package, "__file__", None)
    imported = os.path.realpath(init) if init else "a package without __init__.py"
    if not init or os.path.dirname(imported) != here:
        return (
            f"another package named 'service' shadows Spool: Python imported {imported}, "
            f"not Spool's {os.path.join(here, '__init__.py')}; {HOW_TO_FIX}"
        )
    missing = [name for name in SPOOL_SURFACE if not hasattr(package, name)]
    if missing:
        return (
            f"another package named 'service' shadows Spool: {imported} is not Spool's "
            f"(it defines no {', '.join(missing)}), so another distribution installed its "
            f"files over Spool's; {HOW_TO_FIX}"
        )
    others = other_distributions()
    if others:
        names = ", ".join(others)
        verb = "installs" if len(others) == 1 else "install"
        return (
            f"the distribution{'s' if len(others) > 1 else ''} {names} also {verb} a "
            f"top-level package named 'service' into {sys.prefix}, so one has overwritten "
            f"the other's files; {HOW_TO_FIX}"
        )
    return None


def other_distributions() -> list[str]:
    """Installed distributions other than Spool whose files include a top-level `service`.

    Their top_level.txt says so when setuptools built them; else their RECORD lists the
    files. Read as plain text: importlib.metadata.packages_distributions() parses every
    file list into paths and took half a second in a venv of 90 distributions, which every
    command, the client's too, would pay."""
    found = set()
    for dist in importlib.metadata.distributions():
        top_level = dist.read_text("top_level.txt")
        if top_level is not None:
            claims = "service" in top_level.split()
        else:
            record = dist.read_text("RECORD") or ""
            claims = any(
                line.startswith(("service/", "service.py,")) for line in record.splitlines()
            )
        if claims:
            name = dist.metadata["Name"] or "?"
            if name.lower().replace("_", "-") != SPOOL_DISTRIBUTION:
                found.add(name)
    return sorted(found)


if __name__ == "__main__":
    sys.exit(main())
