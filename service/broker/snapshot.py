"""The memory backend's snapshot: what is left at a graceful stop, read back at the next start.

JSON lines: a header naming the format (with the paused queues and each queue's counts),
then one message record per line. Written to a
temp file, fsynced and renamed, so a crash mid-write leaves the old file or none, never half.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ..errors import StartupError
from ..model import Message
from .base import QueueCounts
from .records import decode_message, encode_message

FORMAT = "spool-snapshot"
VERSION = 1


class Header(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    version: int
    paused: list[str] = []
    # Added after version 1 shipped: a snapshot without it reads as counts of zero.
    counts: dict[str, QueueCounts] = {}


def write(
    path: Path,
    messages: Sequence[Message],
    paused: Sequence[str],
    counts: dict[str, QueueCounts] | None = None,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(
            msgspec.json.encode(Header(FORMAT, VERSION, list(paused), dict(counts or {}))) + b"\n"
        )
        for msg in messages:
            out.write(encode_message(msg) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)


def read(path: Path) -> tuple[list[Message], list[str], dict[str, QueueCounts]] | None:
    """None when there is no snapshot; StartupError (file left in place) when it is bad."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StartupError(f"broker.snapshot_path: cannot read {str(path)!r}: {exc}") from None
    lines = data.splitlines()
    try:
        header = msgspec.json.decode(lines[0], type=Header) if lines else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        header = None
    if header is None or header.format != FORMAT or header.version != VERSION:
        raise StartupError(
            f"broker.snapshot_path: {str(path)!r} is not a Spool snapshot (version {VERSION}); "
            "move it away to start empty"
        )
    messages: list[Message] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            messages.append(decode_message(line))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StartupError(
                f"broker.snapshot_path: {str(path)!r} line {number} is corrupt ({exc}); "
                "the file is left in place"
            ) from None
    return messages, header.paused, header.counts


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
