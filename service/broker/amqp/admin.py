"""The amqp backend's operator actions and upkeep: pause and resume for every node, redrive
from the dead-letter queue, the queue figures, and applying events from the stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import aiormq
import msgspec

from ...errors import Conflict, NotFound, QueueFull
from ...model import Message, Status
from ..base import QueueCounts, QueueStats, Redriven
from ..records import decode_message, encode_message
from . import topology
from .view import FINAL, GEN, NEW, Event, decode_event, encode_event, event_message, version

if TYPE_CHECKING:
    from .broker import AmqpBroker
    from .link import Link

log = logging.getLogger(__name__)

FIGURES_INTERVAL_S = 1.0


class PauseState(msgspec.Struct):
    paused: bool


def encode(event: Event) -> bytes:
    return encode_event(event)


def encode_marker(token: str) -> bytes:
    return encode_event(Event("marker", token=token))


def apply_event(b: AmqpBroker, body: bytes) -> None:
    event = decode_event(body)
    if event.kind == "message":
        b.view.apply(event_message(event), event.version, event.count)
    elif event.kind == "pause":
        b.apply_pause(event)
    elif event.kind == "dropped":
        b.view.tombstones.get(event.queue, set()).discard(event.token)
    elif event.kind == "marker":
        if event.token == b._marker:
            b._caught_up.set()
        fut = b.syncs.get(event.token)
        if fut is not None and not fut.done():
            fut.set_result(None)


def spawn(b: AmqpBroker, coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    b.tasks.add(task)

    def done(task: asyncio.Task[None]) -> None:
        b.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background RabbitMQ call failed", exc_info=task.exception())

    task.add_done_callback(done)


# ---------------------------------------------------------------------- cancel
async def cancel(b: AmqpBroker, message_id: str) -> Message:
    known = b.view.messages.get(message_id)
    if known is None:
        raise NotFound(f"message {message_id!r} is not known")
    if not known.status.cancellable:
        raise Conflict(f"message {message_id!r} is {known.status.value}; it cannot be cancelled")
    link = await b.usable_link()
    gen = b.view.versions[message_id] // GEN
    msg = decode_message(encode_message(known))
    msg.status, msg.finished_at = Status.CANCELLED, b.clock()
    # The copy in RabbitMQ stays until a consumer meets it and drops it (a final status).
    await b.emit(msg, version(gen, msg.attempts, FINAL), "cancelled", link)
    return msg


# ---------------------------------------------------------------------- pause / resume
async def set_paused(b: AmqpBroker, queue: str, paused: bool) -> QueueStats:
    b.queue(queue)
    link = await b.usable_link()
    # The state queue keeps the last word for nodes that start later; the stream tells the
    # nodes that run now.
    await link.publish(topology.state(queue), msgspec.json.encode(PauseState(paused)))
    await link.publish(topology.EVENTS, encode(Event("pause", queue, paused=paused)))
    if b.view.paused[queue] != paused:
        b.view.paused[queue] = paused
        await apply_consuming(b, queue)
    return b.cached_stats(queue)


async def apply_consuming(b: AmqpBroker, queue: str) -> None:
    link = b.link
    if link is None or not link.usable or not b._caught_up.is_set():
        return  # the next connection (or the end of the replay) starts them by the flags
    if b.view.paused[queue]:
        await link.stop_consuming(queue)
        inbox = b.inbox[queue]
        while not inbox.empty():
            came_by, delivery = inbox.get_nowait()
            if came_by is link:
                await delivery.nack(requeue=True)
    else:
        await link.start_consuming(queue, b.deliver_to(queue, link))


async def load_pause_state(b: AmqpBroker, link: Link) -> None:
    assert link.probe is not None
    for name in b.queues:
        state = await link.probe.declare_queue(topology.state(name), passive=True)
        got = await state.get(no_ack=False, fail=False)
        if got is None:
            continue
        try:
            b.view.paused[name] = msgspec.json.decode(got.body, type=PauseState).paused
        except msgspec.DecodeError:
            log.warning("ignoring an unreadable pause state for %r", name)
        await got.nack(requeue=True)


# ---------------------------------------------------------------------- redrive
async def redrive(b: AmqpBroker, queue: str, ids: Sequence[str] | None) -> Redriven:
    qs = b.queue(queue)
    link = await b.usable_link()
    # A channel of its own: what it holds and does not ack goes back when it closes.
    channel = await link.connection.channel(publisher_confirms=False)
    try:
        dead = await channel.declare_queue(topology.dead(queue), passive=True)
        count = int(dead.declaration_result.message_count or 0)
        letters: dict[str, tuple[Any, Message, int]] = {}
        duplicates = []
        for _ in range(count):
            got = await dead.get(no_ack=False, fail=False)
            if got is None:
                break
            msg = decode_message(got.body)
            gen = (got.headers or {}).get("x-spool-gen")
            if msg.id in letters:
                duplicates.append((msg.id, got))
            else:
                letters[msg.id] = (got, msg, gen if isinstance(gen, int) else 0)
        wanted = list(letters) if ids is None else list(dict.fromkeys(ids))
        chosen = [i for i in wanted if i in letters]
        skipped = [i for i in wanted if i not in letters]
        await refresh_queue(b, link, queue)
        room = qs.max_size - waiting(b, queue)
        if len(chosen) > room:
            raise QueueFull(
                f"queue {queue!r} has room for {max(0, room)} messages; {len(chosen)} dead "
                "letters do not fit",
                retry_after=1,
            )
        done = 0
        for mid in chosen:
            got, msg, gen = letters[mid]
            msg.attempts = msg.failures = 0
            msg.result = msg.error = msg.started_at = msg.finished_at = msg.scheduled_for = None
            msg.status = Status.QUEUED
            try:
                await b.send(link, msg, gen + 1)
            except aiormq.exceptions.DeliveryError:
                skipped.extend(i for i in chosen[done:])
                break
            await b.emit(msg, version(gen + 1, 0, NEW), None, link)
            await got.ack()
            done += 1
        chosen_set = set(chosen[:done])
        for mid, got in duplicates:
            if mid in chosen_set:
                await got.ack()  # a second copy of a letter that was just redriven
        return Redriven(done, skipped)
    finally:
        if not channel.is_closed:
            await channel.close()


# ---------------------------------------------------------------------- figures
def waiting(b: AmqpBroker, queue: str) -> int:
    figures = b.figures[queue]
    counts = b.view.status_counts[queue]
    ready = figures.get("work", 0) + figures.get("due", 0)
    return ready + counts[Status.SCHEDULED] + counts[Status.RETRYING]


async def refresh_queue(b: AmqpBroker, link: Link, queue: str) -> None:
    b.figures[queue] = {
        "work": await link.depth(topology.work(queue)),
        "due": await link.depth(topology.due(queue)),
        "dead": await link.depth(topology.dead(queue)),
    }


async def refresh_figures(b: AmqpBroker) -> None:
    link = b.link
    if link is None or not link.usable:
        return
    for name in b.queues:
        await refresh_queue(b, link, name)


async def refresh_loop(b: AmqpBroker) -> None:
    """Figures for cached_stats (passive declares) and results retention, once a second."""
    while True:
        await asyncio.sleep(FIGURES_INTERVAL_S)
        b.view.sweep()
        try:
            await asyncio.wait_for(refresh_figures(b), 5.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("refreshing queue figures failed", exc_info=True)


def stats_of(b: AmqpBroker, queue: str) -> QueueStats:
    qs = b.queue(queue)
    figures = b.figures[queue]
    counts = b.view.status_counts[queue]
    qc = b.view.counts[queue]
    return QueueStats(
        name=queue,
        paused=b.view.paused[queue],
        max_size=qs.max_size,
        depth={
            "scheduled": counts[Status.SCHEDULED],
            "queued": max(
                0,
                figures.get("work", 0) + figures.get("due", 0) - len(b.view.tombstones[queue]),
            ),
            "running": counts[Status.RUNNING],
            "retrying": counts[Status.RETRYING],
            "dead": figures.get("dead", len(b.view.dead[queue])),
        },
        counts=QueueCounts(**{k: getattr(qc, k) for k in QueueCounts.__slots__}),
    )


__all__ = ["GEN"]
