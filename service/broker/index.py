"""The broker's index of every message it holds, by id: one small dict per 16 ms of ids.

Ids are UUIDv7, whose first 48 bits are the millisecond they were made, so the first twelve
characters of an id name a 16 ms window. One flat dict of millions of messages makes every
new id a random probe into an index far larger than the CPU's caches, and every doubling
re-inserts all of them at once (a pause of a third of a second at 3 M). The messages of a
publish land together in their window's dict, small enough to stay in cache: measured at
3 M held, 70 ns an insert against 250 to 450 in one dict. Lookups pay one small dict more.
Any other string works as an id too (it is filed under its own first twelve characters).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import attrgetter

from ..model import Message

_id = attrgetter("id")

WINDOW_CHARS = 12  # "0190e0f1-2a3": 44 of the 48 timestamp bits, so a window is 16 ms


class IdIndex:
    __slots__ = ("_size", "_windows")

    def __init__(self) -> None:
        self._windows: dict[str, dict[str, Message]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, mid: str, default: Message | None = None) -> Message | None:
        window = self._windows.get(mid[:WINDOW_CHARS])
        if window is None:
            return default
        return window.get(mid, default)

    def __getitem__(self, mid: str) -> Message:
        return self._windows[mid[:WINDOW_CHARS]][mid]

    def __setitem__(self, mid: str, msg: Message) -> None:
        window = self._window(mid[:WINDOW_CHARS])
        size = len(window)
        window[mid] = msg
        self._size += len(window) - size

    def add_all(self, msgs: Sequence[Message]) -> None:
        """Index a publish's messages: in one C-level update when they share a window, as
        a batch made within 16 ms does."""
        if not msgs:
            return
        ids = list(map(_id, msgs))
        key = ids[0][:WINDOW_CHARS]
        # A full-length key that every id starts with is every id's window (a shorter one
        # is a window of its own, which longer ids starting with it are not in).
        if len(key) < WINDOW_CHARS or not all(map(str.startswith, ids, repeat(key))):
            for msg in msgs:
                self[msg.id] = msg
            return
        window = self._window(key)
        size = len(window)
        window.update(zip(ids, msgs, strict=True))
        self._size += len(window) - size

    def pop(self, mid: str, default: Message | None = None) -> Message | None:
        key = mid[:WINDOW_CHARS]
        window = self._windows.get(key)
        if window is None or mid not in window:
            return default
        msg = window.pop(mid)
        self._size -= 1
        if not window:
            del self._windows[key]  # windows live only while they hold messages
        return msg

    def values(self) -> Iterator[Message]:
        for window in list(self._windows.values()):
            yield from list(window.values())

    def _window(self, key: str) -> dict[str, Message]:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = {}
        return window
