"""A consumer task: take → run the handler (with its timeout) → record the outcome.

One bad message never kills a consumer; a cancellation it did not ask for is never
swallowed; and the outcome of an attempt is recorded even while the task is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .broker.base import Failed, Outcome, Succeeded
from .executor import HandlerFailure, HandlerTimeout
from .model import ErrorInfo, HandlerContext, Message

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)

# After an unexpected broker error, wait this long before taking again (no hot loop).
ERROR_PAUSE_S = 0.5


async def consume(runtime: Runtime, queue: str) -> None:
    broker = runtime.broker
    while True:
        try:
            message = await broker.take(queue)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("taking from queue %r failed", queue, extra={"queue": queue})
            await asyncio.sleep(ERROR_PAUSE_S)
            continue
        runtime.running += 1
        try:
            await run_attempt(runtime, message)
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
            runtime.running -= 1


async def run_attempt(runtime: Runtime, message: Message) -> None:
    queue = runtime.settings.queues[message.queue]
    qmetrics = runtime.metrics.queues[message.queue]
    if message.enqueued_at is not None and message.started_at is not None:
        qmetrics.wait.observe(max(0.0, message.started_at - message.enqueued_at))
    ctx = HandlerContext(
        id=message.id,
        queue=message.queue,
        attempt=message.attempts,
        headers=message.headers,
        options=queue.options,
    )
    extra = {"message_id": message.id, "queue": message.queue, "attempt": message.attempts}
    log.debug("message started", extra=extra)
    started = time.perf_counter()
    outcome: Outcome
    try:
        result = await runtime.executors.run(
            queue.mode, runtime.handlers[message.queue], message.body, ctx, queue.timeout_s
        )
        outcome = Succeeded(result)
    except asyncio.CancelledError:
        # A graceful stop's deadline: not a failure. Give it back, shielded from the cancel.
        await asyncio.shield(runtime.broker.interrupt(message))
        log.warning("message interrupted by shutdown; it will run again", extra=extra)
        raise
    except HandlerFailure as exc:
        outcome = Failed(
            ErrorInfo(exc.type_name, exc.message), timed_out=isinstance(exc, HandlerTimeout)
        )
        if exc.tb:
            log.warning(
                "handler failed: %s: %s\n%s",
                exc.type_name,
                exc.message,
                exc.tb.rstrip(),
                extra=extra,
            )
        else:
            log.warning("handler failed: %s: %s", exc.type_name, exc.message, extra=extra)
    except Exception as exc:
        outcome = Failed(ErrorInfo(type(exc).__name__, str(exc)))
        log.warning("handler failed", exc_info=True, extra=extra)
    duration = time.perf_counter() - started
    qmetrics.processing.observe(duration)
    finished = await asyncio.shield(runtime.broker.finish(message, outcome))
    qmetrics.processed[finished.outcome].inc()
    if isinstance(outcome, Failed) and outcome.timed_out:
        qmetrics.timeouts.inc()
    log.info(
        "message %s",
        finished.outcome,
        extra={**extra, "duration_ms": round(duration * 1000, 3), "outcome": finished.outcome},
    )
