"""Handlers: the registry that resolves config references, and the built-in handlers."""

from .builtin import checksum, echo, webhook
from .registry import ResolvedHandler, resolve

__all__ = ["ResolvedHandler", "checksum", "echo", "resolve", "webhook"]
