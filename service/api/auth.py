"""Bearer tokens with scopes: publish, read, admin. Compared in constant time, never logged."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from quart import current_app, request

from ..config import AuthSettings
from ..errors import ConfigError, Forbidden, Unauthorized

SCOPES = frozenset({"publish", "read", "admin"})

P = ParamSpec("P")
R = TypeVar("R")


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self.public_metrics = settings.public_metrics
        self._tokens: list[tuple[bytes, frozenset[str]]] = []
        for index, entry in enumerate(settings.tokens):
            scopes_text, sep, token = entry.partition(":")
            scopes = frozenset(s for s in scopes_text.split("+") if s)
            if not sep or not token or not scopes or not scopes <= SCOPES:
                raise ConfigError(
                    f"auth.tokens[{index}]: expected 'scope+scope:token' with scopes from "
                    f"{', '.join(sorted(SCOPES))}"
                )
            self._tokens.append((_digest(token), scopes))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def scopes_for(self, header: str | None) -> frozenset[str]:
        """The scopes of the presented bearer token; Unauthorized when it is missing or wrong."""
        scheme, _, credentials = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer":  # RFC 9110 11.1: the scheme is case-insensitive
            raise Unauthorized("this route needs 'Authorization: Bearer <token>'")
        presented = _digest(credentials.strip())
        found: frozenset[str] | None = None
        for token, scopes in self._tokens:
            # Digests of equal length, every token checked: the time taken says nothing
            # about which token matched, nor how long the real ones are.
            if hmac.compare_digest(presented, token):
                found = scopes
        if found is None:
            raise Unauthorized("the bearer token is not valid")
        return found

    def authorize(self, header: str | None, any_of: frozenset[str]) -> None:
        """Unauthorized or Forbidden unless the Authorization header's token has one of
        `any_of` (admin always passes). The one rule for the routes and the fast path."""
        if not self._tokens:
            return
        scopes = self.scopes_for(header)
        if "admin" not in scopes and not scopes & any_of:
            raise Forbidden(f"this route needs the {' or '.join(sorted(any_of))} scope")

    def check(self, any_of: frozenset[str]) -> None:
        """authorize() for the current Quart request."""
        self.authorize(request.headers.get("Authorization"), any_of)


def requires(
    *scopes: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Route decorator: the request needs one of `scopes` (admin always passes)."""
    wanted = frozenset(scopes)

    def decorate(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(view)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            authenticator(current_app.extensions).check(wanted)
            return await view(*args, **kwargs)

        return guarded

    return decorate


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def authenticator(extensions: dict[str, Any]) -> Authenticator:
    auth: Authenticator = extensions["spool.auth"]
    return auth
