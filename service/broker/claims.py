"""Claims: the messages whose next state the journal is committing right now.

With a journal a change is made visible only once it is committed, so there is an await
between checking that a change is allowed and applying it. A transition therefore checks
and claims in one synchronous step; every other transition leaves a claimed message alone
until the claim is released (the change applied, or given up): a taker passes it over, a
cancel waits to answer from the outcome, retention and redrive skip it. Without a journal
nothing is ever claimed: check and change happen in one step anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Claim:
    __slots__ = ("displaced", "released")

    def __init__(self, displaced: bool) -> None:
        # Its entry left the ready line or the scheduler's heap while claimed: should the
        # change fail, the holder puts the message back where it waits.
        self.displaced = displaced
        self.released: asyncio.Future[None] | None = None  # made for the first waiter only


class Claims:
    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, Claim] = {}

    def __contains__(self, mid: str) -> bool:
        return mid in self._held

    def hold(self, ids: Iterable[str], *, displaced: bool = False) -> None:
        for mid in ids:
            assert mid not in self._held, f"message {mid} is claimed twice"
            self._held[mid] = Claim(displaced)

    def displace(self, mid: str) -> bool:
        """True when `mid` is claimed: its entry (just popped by the caller) is noted as gone,
        so the holder puts it back if its change fails."""
        claim = self._held.get(mid)
        if claim is None:
            return False
        claim.displaced = True
        return True

    def release(self, mid: str) -> bool:
        """Ends the claim; True when its entry was displaced meanwhile."""
        claim = self._held.pop(mid)
        if claim.released is not None:
            claim.released.set_result(None)
        return claim.displaced

    async def released(self, mid: str) -> None:
        """Returns once `mid` is not claimed (at once when it is not)."""
        claim = self._held.get(mid)
        if claim is None:
            return
        if claim.released is None:
            claim.released = asyncio.get_running_loop().create_future()
        # Shielded: one waiter going away must not cancel the future the others wait on.
        await asyncio.shield(claim.released)

    async def all_released(self) -> None:
        """Returns once nothing is claimed: every change that was committing has landed
        (or been given up), so memory shows what the journal holds."""
        while self._held:
            await self.released(next(iter(self._held)))
