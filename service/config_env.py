"""SPOOL_* environment variables: the config keys they set, and the ones that set nothing.

A setting's variable is `SPOOL_` + its dotted key in upper case with `__` between levels
(SPOOL_SERVER__BIND). A SPOOL_ variable without `__` sets nothing, and a typo there
(SPOOL_SERVER_BIND) would be ignored without a word: so each one is warned about at start,
with the name it most likely meant.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "SPOOL_"
# Variables Spool reads that are not settings: the config file's path (cli.py) and the
# command-line client's server and token (client/core.py).
OTHER_VARIABLES = ("SPOOL_CONFIG", "SPOOL_URL", "SPOOL_TOKEN")
# How alike a name must be to one Spool reads to be called a misspelling of it: enough for
# a missing '_' or a letter too many (SPOOL_SERVER_BIND, SPOOL_CONFIG_PATH), not for a
# variable that merely shares the prefix.
NEAR_MISS = 0.8


def setting_path(name: str) -> list[str] | None:
    """The keys a SPOOL_A__B variable sets (['a', 'b']), or None for any other name."""
    if not name.startswith(ENV_PREFIX) or "__" not in name:
        return None
    return [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        keys = setting_path(name)
        if keys is None:
            continue  # SPOOL_CONFIG and friends are not settings
        if any(not key for key in keys):
            raise ConfigError(f"environment variable {name}: empty key between '__'")
        table = raw
        for key in keys[:-1]:
            child = table.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(keys)}: {key!r} is not a table (from {name})")
            table = child
        table[keys[-1]] = parse_env_value(value)


def parse_env_value(value: str) -> Any:
    """A TOML value where the text parses as one (number, boolean, array), else the string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def unused_variables(environ: Mapping[str, str], settable: Iterable[str]) -> list[str]:
    """One warning for each SPOOL_ variable that is neither a setting nor one Spool reads,
    naming the variable it most likely meant among `settable` and OTHER_VARIABLES."""
    known = [*settable, *OTHER_VARIABLES]
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" in name or name in OTHER_VARIABLES:
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=NEAR_MISS)
        hint = (
            f"did you mean {near[0]}?"
            if near
            else "a setting's variable is SPOOL_SECTION__KEY, with '__' between levels "
            "(e.g. SPOOL_SERVER__BIND)"
        )
        warnings.append(
            f"environment variable {name} matches no Spool setting and is ignored; {hint}"
        )
    return warnings
