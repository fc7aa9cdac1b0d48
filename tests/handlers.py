"""Handlers used by the tests: each one exercises a path of the consumer or executor."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.model import HandlerContext


def echo(body: Any) -> Any:
    return body


def with_context(body: Any, ctx: HandlerContext) -> dict[str, Any]:
    return {
        "id": ctx.id,
        "queue": ctx.queue,
        "attempt": ctx.attempt,
        "headers": dict(ctx.headers),
        "options": dict(ctx.options),
    }


async def async_echo(body: Any) -> Any:
    await asyncio.sleep(0)
    return body


def fail(body: Any) -> Any:
    raise ValueError(f"cannot handle {body!r}")


def flaky(body: Any, ctx: HandlerContext) -> dict[str, int]:
    """Fails until attempt `succeed_on` (default 3)."""
    succeed_on = int(body.get("succeed_on", 3)) if isinstance(body, dict) else 3
    if ctx.attempt < succeed_on:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return {"attempt": ctx.attempt}


def poison(body: Any) -> Any:
    """Fails while the body says so; a redrive after fixing the cause is modelled by a file."""
    marker = Path(body["marker"]) if isinstance(body, dict) and "marker" in body else None
    if marker is None or not marker.exists():
        raise ValueError("poison message")
    return "healed"


def sleep(body: Any) -> Any:
    time.sleep(float(body.get("seconds", 1.0)) if isinstance(body, dict) else 1.0)
    return "slept"


async def async_sleep(body: Any) -> Any:
    await asyncio.sleep(float(body.get("seconds", 1.0)) if isinstance(body, dict) else 1.0)
    return "slept"


async def stubborn(body: Any) -> Any:
    """Ignores cancellation: the runtime must not wait for it forever."""
    deadline = time.monotonic() + (float(body.get("seconds", 30)) if isinstance(body, dict) else 30)
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue
    return "done"


def spin(body: Any) -> int:
    """Pure-Python CPU work for `seconds`: holds the GIL the whole time."""
    seconds = float(body.get("seconds", 1.0)) if isinstance(body, dict) else 1.0
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


def crash(body: Any) -> Any:
    """Kills its worker process outright, like a segfault or the OOM killer would."""
    os._exit(13)


def exit_now(body: Any) -> Any:
    """sys.exit() from a handler: a failed attempt, not a way to stop anything."""
    if not body.get("ok"):
        sys.exit(3)
    return "ok"


def not_serializable(body: Any) -> Any:
    return object()


def record(body: Any, ctx: HandlerContext) -> str:
    """Appends the message id to options.path with fsync: proof of processing across crashes.
    options.sleep_s (default 0) makes it slower, so a backlog builds up under load."""
    time.sleep(float(ctx.options.get("sleep_s", 0)))
    path = ctx.options["path"]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return ctx.id


async def record_async(body: Any, ctx: HandlerContext) -> str:
    """record() for async queues, after `options.sleep_s` of (simulated) I/O."""
    await asyncio.sleep(float(ctx.options.get("sleep_s", 0.0)))
    path = ctx.options["path"]
    with open(path, "a") as out:  # noqa: ASYNC230 - one short line, O_APPEND
        out.write(f"{ctx.id}\n")
    return ctx.id


def scheduling(body: Any) -> dict[str, int]:
    """How the process running it is scheduled: niceness and (on Linux) policy."""
    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else -1
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "policy": policy}


class Unprintable(Exception):
    """str() raises: recording the failure must not need it."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class UnprintableAndUnrepresentable(Unprintable):
    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class NonStringStr(Exception):
    def __str__(self) -> Any:
        return 42


class TextSubclass(str):
    """A str subclass: msgspec will not encode it where a plain str is expected."""


class SubclassStr(Exception):
    def __str__(self) -> str:
        return TextSubclass("a str, but not quite")


class CustomBase(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


BASE_EXCEPTIONS: dict[str, Callable[[], BaseException]] = {
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "CustomBase": lambda: CustomBase("not an Exception"),
}

HOSTILE_ERRORS: dict[str, Callable[[], Exception]] = {
    "str_raises": lambda: Unprintable("hidden"),
    "str_and_repr_raise": lambda: UnprintableAndUnrepresentable("hidden"),
    "str_not_a_string": lambda: NonStringStr("hidden"),
    "str_subclass": SubclassStr,
    "huge": lambda: ValueError("x" * 1_000_000),
    "lone_surrogate": lambda: ValueError("bad \ud800 text"),
}


def raise_base(body: Any) -> Any:
    """Raises the BaseException that body["raise"] names (SystemExit by default)."""
    raise BASE_EXCEPTIONS[body.get("raise", "SystemExit") if isinstance(body, dict) else ""]()


async def async_raise_base(body: Any) -> Any:
    await asyncio.sleep(0)
    raise_base(body)


def raise_hostile(body: Any) -> Any:
    """Raises the exception that body["raise"] names, each hard to turn into text."""
    raise HOSTILE_ERRORS[body["raise"]]()


async def async_raise_hostile(body: Any) -> Any:
    await asyncio.sleep(0)
    raise_hostile(body)


def hostile_result(body: Any) -> Any:
    """Returns what body["result"] names: a list containing itself, NaN, an object()."""
    kind = body["result"]
    if kind == "cycle":
        cycle: list[Any] = []
        cycle.append(cycle)
        return cycle
    if kind == "nested_cycle":
        inner: dict[str, Any] = {}
        inner["self"] = [inner]
        return {"outer": inner}
    if kind == "nan":
        return {"value": float("nan")}
    return object()


async def async_hostile_result(body: Any) -> Any:
    await asyncio.sleep(0)
    return hostile_result(body)


async def async_exit_from_a_callback(body: Any) -> str:
    """Escapes the consumer: a callback it schedules raises SystemExit on the bare loop, as a
    library's stray callback or background task might."""
    asyncio.get_running_loop().call_soon(sys.exit, 4)
    return "scheduled"


async def cancels_itself(body: Any) -> Any:
    """Raises CancelledError of its own (as awaiting something cancelled elsewhere does)."""
    if isinstance(body, dict) and body.get("cancel"):
        raise asyncio.CancelledError
    return body


def wait_for_file(body: Any) -> str:
    """Returns once the file body["path"] exists: a test creates it when the handler may
    finish (bounded, so a test that never does fails instead of hanging)."""
    path = Path(body["path"])
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return "done"


# Gates: handlers that run until the test says so. A test that needs "a handler is running
# now" or "the pool is busy" holds one of these instead of guessing how long a sleep lasts,
# so a loaded machine cannot change what the test sees. The body names two files:
# `release` (the handler returns once it exists) and, optionally, `started` (the message id
# is appended to it as the handler begins, after the broker committed the attempt). With
# `"fail": true` the attempt fails once the gate opens instead of succeeding.
GATE_MAX_S = 60.0  # a test that never opens its gate fails here instead of hanging


def _gate_started(body: dict[str, Any], ctx: HandlerContext) -> None:
    if body.get("started"):
        with open(body["started"], "a") as out:
            out.write(f"{ctx.id}\n")


def _gate_failed() -> TimeoutError:
    return TimeoutError(f"the test never opened the gate within {GATE_MAX_S}s")


def _gate_opened(body: dict[str, Any]) -> str:
    if body.get("fail"):  # a failed attempt that ends exactly when the test says
        raise RuntimeError("failing on purpose once the gate opened")
    return "released"


def gate(body: dict[str, Any], ctx: HandlerContext) -> str:
    """A blocking handler (thread mode) that returns once `body.release` exists."""
    _gate_started(body, ctx)
    deadline = time.monotonic() + GATE_MAX_S
    while not os.path.exists(body["release"]):
        if time.monotonic() > deadline:
            raise _gate_failed()
        time.sleep(0.01)
    return _gate_opened(body)


async def gate_async(body: dict[str, Any], ctx: HandlerContext) -> str:
    """gate() for async queues: awaits, never blocks the loop."""
    _gate_started(body, ctx)
    deadline = time.monotonic() + GATE_MAX_S
    while not os.path.exists(body["release"]):  # noqa: ASYNC240 - one stat per 10 ms
        if time.monotonic() > deadline:
            raise _gate_failed()
        await asyncio.sleep(0.01)
    return _gate_opened(body)


def spin_until(body: dict[str, Any], ctx: HandlerContext) -> int:
    """spin() until `body.release` exists: pure-Python CPU work, GIL held, however long the
    test needs its process worker busy."""
    _gate_started(body, ctx)
    deadline = time.monotonic() + GATE_MAX_S
    count = 0
    while True:
        for _ in range(10_000):
            count += 1
        if os.path.exists(body["release"]):
            return count
        if time.monotonic() > deadline:
            raise _gate_failed()


def fail_with_text(body: Any) -> Any:
    """Raises an error whose message is the body, as it is: line breaks and all."""
    raise ValueError(str(body))


def spawn_lingering(body: Any) -> int:
    """Starts a child that outlives the server, keeping every inheritable descriptor (as
    os.system or a daemon a handler starts would); returns its pid."""
    child = subprocess.Popen(["sleep", str(body)], close_fds=False)
    return child.pid


def _snooze_calls(body: dict[str, Any]) -> int:
    """Counts this message's calls in body['path'] (a file: process workers share it)."""
    with open(body["path"], "a+") as calls:
        calls.write(".")
        calls.seek(0)
        return len(calls.read())


def snooze(body: dict[str, Any], ctx: HandlerContext) -> dict[str, int]:
    """Snoozes (raising, or returning, RateLimited as body['how'] says) until call number
    body['snoozes'] + 1, which succeeds with the call count and the attempt it ran as."""
    from service.handlers import RateLimited

    calls = _snooze_calls(body)
    if calls <= int(body["snoozes"]):
        limited = RateLimited(float(body.get("after_s", 0.01)))
        if body.get("how") == "return":
            return limited  # type: ignore[return-value]  # a returned snooze, on purpose
        raise limited
    return {"calls": calls, "attempt": ctx.attempt}


async def snooze_async(body: dict[str, Any], ctx: HandlerContext) -> dict[str, int]:
    return snooze(body, ctx)


# Progress (ctx.progress): each reports, then holds on a gate like gate() so the test can
# look at the running message, then reports again and returns.
def _progress_gate_wait(body: dict[str, Any]) -> None:
    deadline = time.monotonic() + GATE_MAX_S
    while not os.path.exists(body["release"]):
        if time.monotonic() > deadline:
            raise _gate_failed()
        time.sleep(0.01)


def progress_gate(body: dict[str, Any], ctx: HandlerContext) -> str:
    """Thread or process mode: 0.5 {"step": "half"}, the gate, then 1.0 {"step": "done"}."""
    ctx.progress(0.5, {"step": "half"})
    _progress_gate_wait(body)
    ctx.progress(1.0, {"step": "done"})
    return "done"


async def progress_gate_async(body: dict[str, Any], ctx: HandlerContext) -> str:
    """progress_gate() for async queues."""
    ctx.progress(0.5, {"step": "half"})
    deadline = time.monotonic() + GATE_MAX_S
    while not os.path.exists(body["release"]):  # noqa: ASYNC240 - one stat per 10 ms
        if time.monotonic() > deadline:
            raise _gate_failed()
        await asyncio.sleep(0.01)
    ctx.progress(1.0, {"step": "done"})
    return "done"


def chatty_progress(body: dict[str, Any], ctx: HandlerContext) -> dict[str, float]:
    """Reports progress in a tight loop, `body.calls` times, the last one 1.0: what a
    handler that floods the loop would do. Returns how long its reports took."""
    calls = int(body["calls"])
    started = time.monotonic()
    for i in range(1, calls + 1):
        ctx.progress(i / calls, {"i": i})
    return {"calls": calls, "elapsed_s": time.monotonic() - started}


def bad_progress(body: dict[str, Any], ctx: HandlerContext) -> str:
    """Reports what body["fraction"] / body["detail"] say: a bad one fails the attempt."""
    ctx.progress(body["fraction"], body.get("detail"))
    return "reported"


def trace_of(body: Any, ctx: HandlerContext) -> dict[str, Any] | None:
    """What the handler's context says of the trace; logs one line of its own while it runs
    (the line must carry the attempt's trace_id and span_id)."""
    import logging

    logging.getLogger("tests.handlers").warning("handler saw %s", ctx.id)
    trace = ctx.trace
    if trace is None:
        return None
    return {
        "trace_id": trace.trace_id,
        "span_id": trace.span_id,
        "parent_id": trace.parent_id,
        "sampled": trace.sampled,
        "traceparent": trace.traceparent,
        "tracestate": trace.tracestate,
    }


async def trace_of_async(body: Any, ctx: HandlerContext) -> dict[str, Any] | None:
    return trace_of(body, ctx)


def flaky_trace(body: Any, ctx: HandlerContext) -> list[str]:
    """Fails its first attempt; the second returns both attempts' span ids."""
    assert ctx.trace is not None
    seen = _FLAKY_SPANS.setdefault(ctx.id, [])
    seen.append(ctx.trace.span_id)
    if ctx.attempt < 2:
        raise ValueError("first attempt fails")
    return seen


_FLAKY_SPANS: dict[str, list[str]] = {}
