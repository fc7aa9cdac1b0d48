"""Spool's Python client: `Client` (sync) and `AsyncClient` over httpx, typed results and
typed errors, retries of 429/503 within a budget, idempotent publishes.

    from service.client import Client
    with Client("http://127.0.0.1:8000", token="...") as spool:
        message = spool.publish("default", {"text": "hi"})
        done = spool.wait(message.id, timeout=30)
"""

from .core import AsyncClient, Client
from .errors import (
    BadRequest,
    Busy,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    ServerError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from .models import (
    Counts,
    DeadPage,
    Depth,
    Envelope,
    ErrorInfo,
    Message,
    Progress,
    QueueInfo,
    Redriven,
    Schedule,
    TraceView,
)

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Busy",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Counts",
    "DeadPage",
    "Depth",
    "Envelope",
    "ErrorInfo",
    "Forbidden",
    "Invalid",
    "Message",
    "NotFound",
    "PayloadTooLarge",
    "Progress",
    "QueueFull",
    "QueueInfo",
    "Redriven",
    "Schedule",
    "ServerError",
    "TraceView",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
]
