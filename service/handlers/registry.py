"""Resolve "module:function" handler references, once, at start."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..config import QueueSettings
from ..errors import ConfigError, HandlerError


@dataclass(frozen=True, slots=True)
class ResolvedHandler:
    ref: str
    fn: Callable[..., Any]
    is_async: bool
    wants_context: bool


def resolve(ref: str) -> ResolvedHandler:
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerError(f"handler {ref!r}: expected 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(f"handler {ref!r}: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise HandlerError(f"handler {ref!r}: {module_name!r} has no {attr!r}")
    if not callable(target):
        raise HandlerError(f"handler {ref!r}: {attr!r} is not callable")
    return ResolvedHandler(
        ref=ref,
        fn=target,
        is_async=inspect.iscoroutinefunction(target),
        wants_context=_takes_two_arguments(target),
    )


def _takes_two_arguments(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


# Module-level: a worker process has no app to own it, and the answer depends on `ref` alone.
@lru_cache(maxsize=256)
def resolve_cached(ref: str) -> ResolvedHandler:
    """For worker processes: each resolves a reference once, on its first message."""
    return resolve(ref)


def resolve_queue_handlers(queues: Mapping[str, QueueSettings]) -> dict[str, ResolvedHandler]:
    """Every queue's handler, checked against its mode; the first problem names its key."""
    handlers: dict[str, ResolvedHandler] = {}
    for name, queue in queues.items():
        try:
            handler = resolve(queue.handler)
        except HandlerError as exc:
            raise ConfigError(f"queues.{name}.handler: {exc.detail}") from None
        if queue.mode == "async" and not handler.is_async:
            raise ConfigError(
                f"queues.{name}.mode: 'async' needs an async def handler; "
                f"{queue.handler!r} is a plain function (use mode 'thread' or 'process')"
            )
        handlers[name] = handler
    return handlers
