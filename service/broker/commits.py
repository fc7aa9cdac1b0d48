"""How the local broker makes a change: the storage commits, then the change is applied
(made visible: memory, ready line, waiters, events, counts), in that order only.

The storage decides, once, which of two ways every change takes (`for_storage`):
- ApplyAtOnce, where nothing is committed between start and stop (NoStorage,
  SnapshotStorage): a change's draft is the message itself, checked and changed in one
  step, with no await and no task (the memory backend's hot path).
- CommitThenApply, where each change is committed (the sqlite journal): the draft is a
  copy, committed first and made the message only then; claims (claims.py) keep every
  other change off the messages meanwhile. The rule itself is _commit_then_apply.

The operations call `change` (or `change_one`, the same for one message, on the hot path)
with a draft and the bookkeeping to apply, and await what it returns when it is not None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from ..model import Message, Status
from ..tasks import TaskOwner
from .claims import Claims
from .index import IdIndex
from .queues import LocalQueue
from .storage import Storage

_FIELDS = Message.__struct_fields__

# Bookkeeping of one message leaving status `old` (LocalState.moved and its kin).
ApplyOne = Callable[[LocalQueue, Message, Status], None]


# The oldest results and dead letters that the drafts, once applied and `forget` deleted,
# push past results.max_entries, none of them claimed or in `forget` (LocalState.evictions).
Evictions = Callable[[Sequence[Message], Sequence[str], Claims], list[str]]


def for_storage(
    storage: Storage,
    messages: IdIndex,
    put_back: Callable[[str], None],
    evictions: Evictions,
    drop_all: Callable[[list[str]], None],
    tasks: TaskOwner,
) -> Commits:
    if storage.writes_each_change:
        return CommitThenApply(storage, messages, put_back, evictions, drop_all, tasks)
    return ApplyAtOnce()


class ApplyAtOnce:
    """Nothing is committed: every change is applied in the call that makes it."""

    def __init__(self) -> None:
        self.claims = Claims()  # never holds anything: check and change are one step

    def draft(self, msg: Message) -> Message:
        return msg

    def change(
        self, drafts: Sequence[Message], apply: Callable[..., None], *args: Any, **_: Any
    ) -> None:
        apply(*args)

    def change_one(
        self,
        draft: Message,
        apply: ApplyOne,
        q: LocalQueue,
        msg: Message,
        old: Status,
        displaced: bool,
    ) -> None:
        apply(q, msg, old)

    def change_paused(
        self, paused_after: Callable[[], list[str]], apply: Callable[..., None], *args: Any
    ) -> None:
        apply(*args)

    def retire(
        self, ids: list[str], drop: Callable[[list[str]], None], wake_upkeep: Callable[[], None]
    ) -> None:
        drop(ids)  # now, so the limit holds exactly


class CommitThenApply:
    """Every change is committed by the storage first, and applied only once it is.

    draft(msg): what a change edits, a copy that becomes the message once committed.
    change(drafts, apply, *args, ...): commit `drafts` (and delete `forget`), then
    apply(*args), its arguments apart (a partial would cost every change). change_one: the
    same for one message; every take and finish makes one, so its arguments are fixed and
    positional, Python's cheapest call. change_paused: the whole paused set, then apply.
    retire: retention past results.max_entries. Each returns None when the change is
    applied already, else what the caller awaits.
    """

    def __init__(
        self,
        storage: Storage,
        messages: IdIndex,
        put_back: Callable[[str], None],
        evictions: Evictions,
        drop_all: Callable[[list[str]], None],
        tasks: TaskOwner,
    ) -> None:
        self.storage = storage
        self.claims = Claims()
        # Each commit runs to its end in a task of this owner's (the runtime's), which the
        # stop awaits before the broker closes: the last write reads memory, which must
        # show what the storage holds.
        self._tasks = tasks
        self._messages = messages  # what a committed draft becomes: the message of its id
        self._put_back = put_back
        self._evictions = evictions
        self._drop_all = drop_all
        self._pausing = asyncio.Lock()  # one paused set committed at a time

    def draft(self, msg: Message) -> Message:
        return msgspec.structs.replace(msg)

    def change(
        self,
        drafts: Sequence[Message],
        apply: Callable[..., None],
        *args: Any,
        forget: Sequence[str] = (),
        claim: bool = True,
        displaced: bool = False,
        undo: Callable[[], None] | None = None,
    ) -> Awaitable[None] | None:
        """The caller checked its precondition with no await since; the claims taken here,
        before any await, keep every other change off these messages until this one is
        applied or given up. `claim=False`: messages nobody else can reach yet (a publish).
        What the caller awaits runs to the end even if the caller goes away."""
        if not (drafts or forget):
            apply(*args)  # nothing to commit
            return None
        # What these drafts push past results.max_entries is deleted in the same commit and
        # dropped as it lands: the bound holds the moment the outcome is visible (left to
        # the upkeep, a reader could still get a result the bound had already evicted).
        evicted = self._evictions(drafts, forget, self.claims)
        if evicted:
            forget = [*forget, *evicted]
        ids = [*((d.id for d in drafts) if claim else ()), *forget]
        self.claims.hold(ids, displaced=displaced)
        writing = self.storage.write(drafts, forget)
        work = self._commit_then_apply(writing, ids, apply, args, undo, drafts, evicted)
        return self._tasks.start_shielded(work, name="commit")

    def change_one(
        self,
        draft: Message,
        apply: ApplyOne,
        q: LocalQueue,
        msg: Message,
        old: Status,
        displaced: bool,
    ) -> Awaitable[None] | None:
        return self.change((draft,), apply, q, msg, old, displaced=displaced)

    def change_paused(
        self, paused_after: Callable[[], list[str]], apply: Callable[..., None], *args: Any
    ) -> Awaitable[None] | None:
        writing = self._write_paused(paused_after)
        return self._tasks.start_shielded(
            self._commit_then_apply(writing, [], apply, args), name="commit-paused"
        )

    async def _write_paused(self, paused_after: Callable[[], list[str]]) -> None:
        # One at a time: each commit holds the whole set, the earlier changes in it. The
        # next one reads the set only after this one's `apply`, which runs in the step the
        # lock is let go in.
        async with self._pausing:
            await self.storage.set_paused(paused_after())

    def retire(
        self, ids: list[str], drop: Callable[[list[str]], None], wake_upkeep: Callable[[], None]
    ) -> None:
        wake_upkeep()  # which commits the deletes first, in batches (upkeep.py)

    async def _commit_then_apply(
        self,
        writing: Awaitable[None],
        ids: list[str],
        apply: Callable[..., None],
        args: tuple[Any, ...],
        undo: Callable[[], None] | None = None,
        drafts: Sequence[Message] = (),
        evicted: Sequence[str] = (),
    ) -> None:
        """The rule. A failed commit makes nothing visible: the claims go, a message whose
        entry was popped meanwhile (or by the caller: `displaced`) goes back where it
        waits, `undo` runs, and the caller gets the error. A commit that lands becomes
        visible in the same step: the drafts become the messages, then `apply` does the
        bookkeeping, so nothing sees the new state without it."""
        try:
            await writing
        except BaseException:
            for mid in ids:
                if self.claims.release(mid):
                    self._put_back(mid)
            if undo is not None:
                undo()
            raise
        try:
            for draft in drafts:  # a publish's new messages are their own drafts
                msg = self._messages.get(draft.id)
                if msg is not None and msg is not draft:
                    for name in _FIELDS:
                        setattr(msg, name, getattr(draft, name))
            self._drop_all(list(evicted))
            apply(*args)
        finally:
            for mid in ids:
                self.claims.release(mid)


# How the broker makes its changes: chosen once, by the storage (for_storage).
Commits = ApplyAtOnce | CommitThenApply
