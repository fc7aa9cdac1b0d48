"""Spool: a message-queue service for Python web backends."""

from ._version import __version__
from .app import create_app
from .config import Settings, load_settings
from .runtime import Runtime

__all__ = ["Runtime", "Settings", "__version__", "create_app", "load_settings"]
