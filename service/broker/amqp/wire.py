"""How a message rides on RabbitMQ: its record as the body, its counters in headers, and the
queue it waits in (the work queue, a rung of the delay ladder, or the dead letters).

The headers carry what a redelivery must not lose: the redrive generation, and the attempts
and failures so far (a node that dies mid-attempt cannot record them in the body)."""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage

from ...model import Message, Status
from ..records import encode_message
from . import topology
from .link import Link

H_GEN, H_ATTEMPTS, H_FAILURES = "x-spool-gen", "x-spool-attempts", "x-spool-failures"


def headers_of(msg: Message, gen: int) -> dict[str, int | str]:
    headers: dict[str, int | str] = {H_GEN: gen, H_ATTEMPTS: msg.attempts, H_FAILURES: msg.failures}
    if msg.traceparent is not None:
        # As W3C's AMQP binding carries them, for any tool that reads RabbitMQ directly; the
        # record in the body carries them for Spool.
        headers["traceparent"] = msg.traceparent
        if msg.tracestate is not None:
            headers["tracestate"] = msg.tracestate
    return headers


def header_int(delivery: AbstractIncomingMessage, name: str) -> int:
    value = (delivery.headers or {}).get(name)
    return value if isinstance(value, int) else 0


def still_waiting(msg: Message, now: float) -> float:
    """Seconds until a scheduled or retrying message is due (0 when it is due or waits for
    nothing else)."""
    if msg.status in (Status.SCHEDULED, Status.RETRYING):
        return max(0.0, (msg.scheduled_for or 0.0) - now)
    return 0.0


async def send(link: Link, msg: Message, gen: int, now: float) -> None:
    """Puts a message where it waits: the work queue, or the delay ladder while not due."""
    remaining = still_waiting(msg, now)
    if remaining > topology.DUE_SLACK_S:
        target = topology.wait(msg.queue, topology.next_step(remaining))
    else:
        target = topology.work(msg.queue)
    await link.publish(
        target, encode_message(msg), priority=msg.priority, headers=headers_of(msg, gen)
    )


async def send_dead(link: Link, msg: Message, gen: int) -> None:
    """The dead-letter copy, which redrive later takes back."""
    await link.publish(topology.dead(msg.queue), encode_message(msg), headers=headers_of(msg, gen))
