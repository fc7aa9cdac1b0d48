"""NO_HEADERS: the headers of every message published without any (model.py re-exports it,
where its users always found it)."""

from __future__ import annotations

from typing import Final, NoReturn


class _NoHeaders(dict[str, str]):
    """The type of NO_HEADERS: an empty dict that refuses every change. A dict, not a
    MappingProxyType, because msgspec encodes dicts (and so their subclasses) natively, and
    writes it `{}` like any empty dict; a proxy would need an enc_hook call per message."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            "NO_HEADERS is shared by every message published without headers: "
            "give the message its own dict instead of changing this one"
        )

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


# The headers of every message published without any, shared by them all (64 bytes less per
# message): a change to it would reach every one, so it refuses changes.
NO_HEADERS: Final[dict[str, str]] = _NoHeaders()
