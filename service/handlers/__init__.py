"""Handlers: the registry that resolves config references, and the built-in handlers."""

from ..failures import RateLimited
from .builtin import checksum, echo, webhook
from .registry import ResolvedHandler, resolve

__all__ = ["RateLimited", "ResolvedHandler", "checksum", "echo", "resolve", "webhook"]
