"""Typed errors: every problem+json the API answers maps to one class, by status."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import msgspec


class ClientError(Exception):
    """Base of every error the client raises. `status` is 0 when no answer came back."""

    status = 0

    def __init__(self, detail: str, *, problem: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problem: dict[str, Any] = problem or {}

    @property
    def title(self) -> str:
        return str(self.problem.get("title", type(self).__name__))


class ConnectionFailed(ClientError):
    """The server could not be reached, or did not answer in time."""


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401


class Forbidden(ClientError):
    status = 403


class NotFound(ClientError):
    status = 404


class Conflict(ClientError):
    status = 409


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


class Invalid(ClientError):
    """The request does not fit the schema; `field` is the path the server named."""

    status = 422

    @property
    def field(self) -> str | None:
        value = self.problem.get("field")
        return str(value) if value is not None else None


class Busy(ClientError):
    """Try again later; `retry_after` is the server's hint in seconds (None without one)."""

    def __init__(
        self, detail: str, *, problem: dict[str, Any] | None = None, retry_after: float | None
    ) -> None:
        super().__init__(detail, problem=problem)
        self.retry_after = retry_after


class QueueFull(Busy):
    status = 429


class Unavailable(Busy):
    status = 503


class ServerError(ClientError):
    """Any other answer the client does not expect (5xx...)."""


_BY_STATUS: dict[int, type[ClientError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
        QueueFull,
        Unavailable,
    )
}


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from(response: httpx.Response) -> ClientError:
    problem: dict[str, Any] = {}
    try:
        decoded = msgspec.json.decode(response.content)
        if isinstance(decoded, dict):
            problem = decoded
    except msgspec.DecodeError:
        pass
    status = response.status_code
    detail = str(problem.get("detail") or f"HTTP {status} {response.reason_phrase}".strip())
    cls = _BY_STATUS.get(status, ServerError)
    if issubclass(cls, Busy):
        return cls(detail, problem=problem, retry_after=retry_after(response))
    error = cls(detail, problem=problem)
    if cls is ServerError:
        error.status = status
    return error
