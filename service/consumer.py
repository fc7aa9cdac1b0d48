"""A consumer task: take → run the handler (with its timeout) → record the outcome.

One bad message never kills a consumer; a cancellation it did not ask for is never
swallowed; and the outcome of an attempt is recorded even while the task is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .broker.base import Broker, Failed, Finished, Outcome, Snoozed, Succeeded
from .config import QueueSettings
from .errors import NotCommitted
from .executor import Executors
from .failures import HandlerFailure, HandlerSnoozed, HandlerTimeout, failure_of
from .handlers.registry import ResolvedHandler
from .metrics import QueueMetrics
from .model import ErrorInfo, HandlerContext, Message
from .progress import ProgressDesk
from .ratelimit import RateGate
from .tasks import TaskOwner
from .tracing import CURRENT, AttemptSpan, Incoming, Spans, Trace, attempt_trace

log = logging.getLogger(__name__)

STOPPED_UNEXPECTEDLY = ErrorInfo(
    "ProcessDied", "the service stopped unexpectedly while the attempt ran"
)
# After an unexpected broker error, wait this long before taking again (no hot loop);
# an outcome the journal could not commit is offered again this often.
ERROR_PAUSE_S = 0.5


class Attempts:
    """The attempts in progress on this node, which every consumer counts, and how a stop
    ends the ones it cuts short."""

    __slots__ = ("ending_unexpectedly", "running")

    def __init__(self) -> None:
        self.running = 0
        # An unexpected end (Runtime.stop_now): an attempt cut short counts as failed.
        self.ending_unexpectedly = False


@dataclass(frozen=True, slots=True)
class QueueWork:
    """Everything one queue's consumers use, and nothing else: looked up once, not per
    message, and no way back up to the runtime."""

    queue: str
    settings: QueueSettings
    handler: ResolvedHandler
    metrics: QueueMetrics
    broker: Broker
    executors: Executors
    attempts: Attempts
    tasks: TaskOwner  # owns what must outlive a cancelled consumer (give-backs, outcomes)
    progress: ProgressDesk  # where ctx.progress reports go (one per node)
    gate: RateGate | None = None  # the queue's rate limit, shared by its consumers
    spans: Spans | None = None  # OpenTelemetry's, when configured


async def consume(work: QueueWork) -> None:
    broker, queue, attempts, gate = work.broker, work.queue, work.attempts, work.gate
    while True:
        if gate is not None:
            # The token first, the message after: a throttled queue's messages stay queued.
            await gate.acquire()
        try:
            message = await broker.take(queue)
        except asyncio.CancelledError:
            if gate is not None:
                gate.release()
            raise
        except Exception:
            if gate is not None:
                gate.release()
            log.exception("taking from queue %r failed", queue, extra={"queue": queue})
            await asyncio.sleep(ERROR_PAUSE_S)
            continue
        if gate is not None:
            gate.use()
        attempts.running += 1
        try:
            await attempt(work, message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "recording the outcome of message %s failed",
                message.id,
                extra={"message_id": message.id, "queue": queue},
            )
            await asyncio.sleep(ERROR_PAUSE_S)
        finally:
            attempts.running -= 1


async def attempt(work: QueueWork, message: Message) -> None:
    """One attempt: a span of the publisher's trace when the message carries one."""
    if message.traceparent is None:
        await run_attempt(work, message)
    else:
        await traced_attempt(work, message, message.traceparent)


async def traced_attempt(work: QueueWork, message: Message, traceparent: str) -> None:
    """run_attempt for a message published with a trace context: the attempt is a span of
    its own in that trace (an OpenTelemetry one, when configured)."""
    span: AttemptSpan | None = None
    if work.spans is None:
        trace = attempt_trace(traceparent, message.tracestate)
    else:
        carried = Incoming(traceparent, message.tracestate)
        span = work.spans.attempt(message.queue, message.id, message.attempts, carried)
        trace = span.trace
    # The attempt's log lines (here, and the handler's own: its task or thread runs in a copy
    # of this context) carry its trace and span ids (logs.py).
    token = CURRENT.set(trace)
    error: str | None = "the attempt was cut short"  # unless run_attempt returns
    try:
        error = await run_attempt(work, message, trace)
    finally:
        CURRENT.reset(token)
        if span is not None:
            span.end(error)


async def run_attempt(work: QueueWork, message: Message, trace: Trace | None = None) -> str | None:
    """Runs one attempt and records its outcome; the failure's description, if it failed."""
    queue, qmetrics, broker = work.settings, work.metrics, work.broker
    if message.enqueued_at is not None and message.started_at is not None:
        qmetrics.wait.observe(max(0.0, message.started_at - message.enqueued_at))
    ctx = HandlerContext(
        id=message.id,
        queue=message.queue,
        attempt=message.attempts,
        headers=dict(message.headers),  # the handler's own copy: it cannot touch the message
        options=queue.options,
        sink=work.progress,
        trace=trace,
    )
    if log.isEnabledFor(logging.DEBUG):
        log.debug("message started", extra=_extra(message))
    started = time.perf_counter()
    outcome: Outcome
    try:
        try:
            result = await work.executors.run(
                queue.mode, work.handler, message.body, ctx, queue.timeout_s
            )
        finally:
            work.progress.close(message.id)  # its latest report lands before the outcome
        outcome = Succeeded(result)
    except asyncio.CancelledError:
        await _give_back_cancelled(work, message)
        raise
    except Exception as exc:
        outcome = _failed(exc, message)
    duration = time.perf_counter() - started
    qmetrics.processing.observe(duration)
    finished = await record(broker, work.tasks, message, outcome)
    _count(qmetrics, finished.outcome, outcome)
    # A success is routine: at thousands a second an info line each would flood the log and
    # cost a fifth of thread-handler throughput (tests/bench B3). Retries and dead letters
    # are news, so they stay at info; `log.level = "debug"` shows every message's steps.
    level = logging.DEBUG if finished.outcome == "succeeded" else logging.INFO
    if log.isEnabledFor(level):
        log.log(
            level,
            "message %s",
            finished.outcome,
            extra={
                **_extra(message),
                "duration_ms": round(duration * 1000, 3),
                "outcome": finished.outcome,
            },
        )
    if isinstance(outcome, Failed):
        return f"{outcome.error.type}: {outcome.error.message}"
    return None


async def _give_back_cancelled(work: QueueWork, message: Message) -> None:
    """The attempt's task is being cancelled; the caller re-raises the cancellation."""
    broker = work.broker
    if work.attempts.ending_unexpectedly:
        # Like a crash, and perhaps this handler's doing: a failed attempt, so a message
        # that stops the service cannot do it at every start for ever.
        await work.tasks.shield(broker.finish(message, Failed(STOPPED_UNEXPECTEDLY)))
        log.warning("message failed: the service stopped while it ran", extra=_extra(message))
        return
    # A graceful stop's deadline: not a failure. Give it back, shielded from the cancel
    # (the stop waits for the owned give-back before the broker closes).
    try:
        await work.tasks.shield(broker.interrupt(message))
    except Exception:
        # Not committed, so still `running`: the broker's last write at stop gives it
        # back. The cancellation goes on either way.
        log.exception("giving back an interrupted message failed", extra=_extra(message))
    else:
        log.warning("message interrupted by shutdown; it will run again", extra=_extra(message))


def _failed(exc: Exception, message: Message) -> Outcome:
    # Executors.run raises only HandlerFailure; anything else is a bug of ours, and
    # must fail the attempt all the same rather than leave the message running.
    failure = failure_of(exc)
    if isinstance(failure, HandlerSnoozed):
        return Snoozed(failure.retry_after_s)
    _log_failure(failure, message)
    return Failed(
        ErrorInfo(failure.type_name, failure.message),
        timed_out=isinstance(failure, HandlerTimeout),
    )


def _count(qmetrics: QueueMetrics, outcome_name: str, outcome: Outcome) -> None:
    if outcome_name == "snoozed":
        qmetrics.snoozed.inc()  # not an attempt's end: spool_messages_processed leaves it out
    else:
        qmetrics.processed[outcome_name].inc()
    if isinstance(outcome, Failed) and outcome.timed_out:
        qmetrics.timeouts.inc()


def _log_failure(failure: HandlerFailure, message: Message) -> None:
    # Both parts are bounded and plain text (failures.py), so a hostile str() cannot make
    # this line huge or unprintable. One line per failed attempt: a handler that fails on
    # every message (a webhook whose receiver is down) would otherwise write some thirty lines
    # of traceback per attempt, and a message's own line breaks (shown as \n, \r) could
    # pass for log lines of their own. The error type and message say what happened; the
    # traceback, which says where, rides along only when `log.level = "debug"` asks for it.
    type_name, text = (
        part.replace("\r", "\\r").replace("\n", "\\n")
        for part in (failure.type_name, failure.message)
    )
    if failure.tb and log.isEnabledFor(logging.DEBUG):
        log.warning(
            "handler failed: %s: %s\n%s",
            type_name,
            text,
            failure.tb.rstrip(),
            extra=_extra(message),
        )
    else:
        log.warning("handler failed: %s: %s", type_name, text, extra=_extra(message))


async def record(broker: Broker, tasks: TaskOwner, message: Message, outcome: Outcome) -> Finished:
    """The attempt's outcome, committed. A journal that cannot write (full disk, read-only
    file) refuses it with NotCommitted and nothing changes: the message stays `running`, as
    the journal holds it. The outcome is kept and offered again until it lands, so it is
    neither lost nor turned into a ProcessDied failure at the next start; a stop meanwhile
    gives the message back to run again, as for any attempt a stop cuts short."""
    refused = 0
    while True:
        try:
            return await tasks.shield(broker.finish(message, outcome))
        except NotCommitted as exc:
            if not refused:
                log.warning("outcome not recorded yet, retrying: %s", exc, extra=_extra(message))
            refused += 1
        await asyncio.sleep(ERROR_PAUSE_S)


def _extra(message: Message) -> dict[str, Any]:
    """A message's log fields; built only for lines that are written (most are not)."""
    return {"message_id": message.id, "queue": message.queue, "attempt": message.attempts}
