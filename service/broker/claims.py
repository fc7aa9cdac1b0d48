"""Claims: the messages whose next state the storage is committing right now.

Where the storage commits each change (the sqlite journal) a change is made visible only
once it is committed, so there is an await between checking that a change is allowed and
applying it. A change therefore checks and claims in one synchronous step (commits.py);
every other change leaves a claimed message alone until the claim is released (the change
applied, or given up): a taker passes it over, a cancel waits to answer from the outcome,
retention and redrive skip it. Where nothing is committed, nothing is ever claimed: check
and change happen in one step anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


class Claim:
    __slots__ = ("displaced", "released")

    def __init__(self, displaced: bool) -> None:
        # Its entry left the ready line or the scheduler's heap while claimed: should the
        # change fail, the holder puts the message back where it waits.
        self.displaced = displaced
        self.released: asyncio.Future[None] | None = None  # made for the first waiter only


class Claims(dict[str, Claim]):
    """The claimed messages by id. A dict, so that `mid in claims`, asked by every take,
    is one C-level lookup."""

    __slots__ = ()

    def hold(self, ids: Sequence[str], *, displaced: bool = False) -> None:
        """Claims every one of `ids` or, when one is claimed already, none: a claim taken
        by a change that then raises would never be released."""
        for mid in ids:
            assert mid not in self, f"message {mid} is claimed twice"
        for mid in ids:
            self[mid] = Claim(displaced)

    def displace(self, mid: str) -> bool:
        """True when `mid` is claimed: its entry (just popped by the caller) is noted as gone,
        so the holder puts it back if its change fails."""
        claim = self.get(mid)
        if claim is None:
            return False
        claim.displaced = True
        return True

    def release(self, mid: str) -> bool:
        """Ends the claim; True when its entry was displaced meanwhile."""
        claim = self.pop(mid)
        if claim.released is not None:
            claim.released.set_result(None)
        return claim.displaced

    async def released(self, mid: str) -> None:
        """Returns once `mid` is not claimed (at once when it is not)."""
        claim = self.get(mid)
        if claim is None:
            return
        if claim.released is None:
            claim.released = asyncio.get_running_loop().create_future()
        # Shielded: one waiter going away must not cancel the future the others wait on.
        await asyncio.shield(claim.released)
