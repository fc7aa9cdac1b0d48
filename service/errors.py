"""One error base for everything a client or operator can be told; app.py maps it to HTTP."""

from __future__ import annotations


class SpoolError(Exception):
    """Base of every error Spool reports. `status` is the HTTP status it maps to."""

    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class ConfigError(SpoolError):
    """A bad config: stops the start with one line naming the dotted key."""

    title = "Invalid configuration"
    slug = "config"


class BadRequest(SpoolError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class Unauthorized(SpoolError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(SpoolError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(SpoolError):
    status = 404
    title = "Not found"
    slug = "not-found"


class UnknownQueue(NotFound):
    title = "Unknown queue"
    slug = "unknown-queue"


class UnknownSchedule(NotFound):
    title = "Unknown schedule"
    slug = "unknown-schedule"


class MethodNotAllowed(SpoolError):
    status = 405
    title = "Method not allowed"
    slug = "method-not-allowed"


class Conflict(SpoolError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class PayloadTooLarge(SpoolError):
    status = 413
    title = "Payload too large"
    slug = "too-large"


class UriTooLong(SpoolError):
    status = 414
    title = "URI too long"
    slug = "uri-too-long"


class UnsupportedMediaType(SpoolError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class Invalid(SpoolError):
    """A request that parsed but does not fit the schema; `field` is its path."""

    status = 422
    title = "Invalid request"
    slug = "invalid"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class InvalidEnvelope(Invalid):
    """An envelope of a publish that the broker refuses (an expiry within its delay):
    `index` is its place in the publish, for the batch route to name `messages[index]`."""

    def __init__(self, detail: str, *, field: str, index: int) -> None:
        super().__init__(f"{field}: {detail}", field=field)
        self.reason, self.index = detail, index

    def in_batch(self) -> Invalid:
        field = f"messages[{self.index}].{self.field}"
        return Invalid(f"{field}: {self.reason}", field=field)


class QueueFull(SpoolError):
    status = 429
    title = "Queue full"
    slug = "queue-full"


class HeadersTooLarge(SpoolError):
    status = 431
    title = "Request header fields too large"
    slug = "headers-too-large"


class Unavailable(SpoolError):
    """Draining, or the backend cannot take writes right now: try again later."""

    status = 503
    title = "Service unavailable"
    slug = "unavailable"


class NotCommitted(Unavailable):
    """The journal could not commit a change (full disk, read-only file), so nothing
    changed: the same change may be offered again once it can write."""


class HandlerError(SpoolError):
    """Raised at start when a queue's handler cannot be resolved."""

    title = "Handler error"
    slug = "handler"


class StartupError(SpoolError):
    """The service cannot start as configured (corrupt snapshot, locked journal...)."""

    title = "Cannot start"
    slug = "startup"
