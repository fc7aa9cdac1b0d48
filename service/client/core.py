"""Client and AsyncClient: one description of every call, two ways to send it.

Each API method is written once, as a plan: a generator that yields the HTTP calls it needs
and turns the answers into typed values. `Client` drives plans with httpx.Client and
time.sleep, `AsyncClient` with httpx.AsyncClient and asyncio.sleep, so both behave the
same. 429 and 503 are retried after Retry-After within a bounded budget; every publish
carries an idempotency key (made here when the caller gives none), so a retried publish
never enqueues twice. RESENT_ONCE: a kept-alive connection the server closed as a request
went out on it fails with no answer; it is sent once more on a new one (as urllib3 does):
reads repeat, publishes carry their key, and a lost cancel's repeat answers 409.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any

import httpx
import msgspec

from .errors import ConnectionFailed, error_from
from .models import DeadPage, Envelope, Message, QueueInfo, Redriven, Schedule
from .plans import NO_BODY, Call, Plan, RetryBudget, T, _Plans

DEFAULT_URL = "http://127.0.0.1:8000"


def _settings(
    url: str | None, token: str | None, headers: dict[str, str] | None
) -> tuple[str, dict[str, str]]:
    base = (url or os.environ.get("SPOOL_URL") or DEFAULT_URL).rstrip("/")
    all_headers = {"Accept": "application/json", **(headers or {})}
    token = token if token is not None else os.environ.get("SPOOL_TOKEN")
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    return base, all_headers


def _unreachable(base: httpx.URL, call: Call, exc: Exception) -> str:
    # An exception's str() may be empty (httpx's ConnectError often is): name its type then.
    url = f"{str(base).rstrip('/')}/{call.path.lstrip('/')}"
    return f"{call.method} {url}: {str(exc) or type(exc).__name__}"


def _request_args(call: Call) -> dict[str, Any]:
    args: dict[str, Any] = {"params": call.params}
    if call.json is not NO_BODY:
        args["content"] = msgspec.json.encode(call.json)
        args["headers"] = {"Content-Type": "application/json", **(call.headers or {})}
    if call.timeout is not None:
        args["timeout"] = call.timeout
    return args


class Client(_Plans):
    """Synchronous client. `url` and `token` default to $SPOOL_URL and $SPOOL_TOKEN.

    `retries` answers of 429/503 are waited out (after their Retry-After) as long as the
    waits add up to at most `retry_budget_s`; then the typed error (QueueFull,
    Unavailable) is raised with the server's `retry_after`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        retry_budget_s: float = 30.0,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base, all_headers = _settings(url, token, headers)
        self.timeout, self.retries, self.retry_budget_s = timeout, retries, retry_budget_s
        self._http = httpx.Client(
            base_url=base, headers=all_headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, plan: Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    def _send(self, call: Call) -> httpx.Response:
        budget = RetryBudget(self.retries, self.retry_budget_s)
        resent = False
        while True:
            try:
                response = self._http.request(call.method, call.path, **_request_args(call))
            except httpx.HTTPError as exc:
                if isinstance(exc, httpx.RemoteProtocolError) and not resent:
                    resent = True  # RESENT_ONCE
                    continue
                raise ConnectionFailed(_unreachable(self._http.base_url, call, exc)) from exc
            if response.is_success:
                return response
            delay = budget.delay(response)
            if delay is None:
                raise error_from(response)
            time.sleep(delay)

    def publish(
        self,
        queue: str,
        body: Any,
        *,
        delay_s: float | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        wait: float | None = None,
        expires_in_s: float | None = None,
    ) -> Message:
        """Publish one message; a key is made when `idempotency_key` is None. With `wait`
        (0 < wait <= 30 s), the server holds the answer until the message is final or
        `wait` has passed (Prefer: wait): check `.final` on what comes back. Not started
        within `expires_in_s` of now (a delay included), it is never run: `expired`."""
        options = (delay_s, priority, idempotency_key, headers or {}, wait, self.timeout)
        return self._run(self._publish(queue, body, *options, expires_in_s))

    def publish_batch(self, queue: str, messages: Iterable[Envelope | Any]) -> list[Message]:
        """Publish all or none; plain values are bodies, Envelope sets the options."""
        return self._run(self._publish_batch(queue, messages))

    def get(self, message_id: str) -> Message:
        return self._run(self._get(message_id))

    def wait(self, message_id: str, timeout: float = 30.0) -> Message:
        """The message once final, or as it is when `timeout` seconds have passed."""
        return self._run(self._wait(message_id, timeout, self.timeout))

    def cancel(self, message_id: str) -> Message:
        return self._run(self._cancel(message_id))

    def queues(self) -> list[QueueInfo]:
        return self._run(self._queues())

    def queue(self, queue: str) -> QueueInfo:
        return self._run(self._queue(queue))

    def pause(self, queue: str) -> QueueInfo:
        return self._run(self._queue(queue, "pause"))

    def resume(self, queue: str) -> QueueInfo:
        return self._run(self._queue(queue, "resume"))

    def dead(self, queue: str, *, limit: int = 50, cursor: str | None = None) -> DeadPage:
        return self._run(self._dead(queue, limit, cursor))

    def redrive(self, queue: str, ids: Iterable[str] | None = None) -> Redriven:
        """Put dead letters back on the queue: the given ids, or all of them."""
        return self._run(self._redrive(queue, ids))

    def schedules(self) -> list[Schedule]:
        return self._run(self._schedules())

    def pause_schedule(self, name: str) -> Schedule:
        return self._run(self._schedule(name, "pause"))

    def resume_schedule(self, name: str) -> Schedule:
        return self._run(self._schedule(name, "resume"))


class AsyncClient(_Plans):
    """The same client for asyncio code: every method is a coroutine."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        retry_budget_s: float = 30.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base, all_headers = _settings(url, token, headers)
        self.timeout, self.retries, self.retry_budget_s = timeout, retries, retry_budget_s
        self._http = httpx.AsyncClient(
            base_url=base, headers=all_headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, plan: Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _send(self, call: Call) -> httpx.Response:
        budget = RetryBudget(self.retries, self.retry_budget_s)
        resent = False
        while True:
            try:
                response = await self._http.request(call.method, call.path, **_request_args(call))
            except httpx.HTTPError as exc:
                if isinstance(exc, httpx.RemoteProtocolError) and not resent:
                    resent = True  # RESENT_ONCE
                    continue
                raise ConnectionFailed(_unreachable(self._http.base_url, call, exc)) from exc
            if response.is_success:
                return response
            delay = budget.delay(response)
            if delay is None:
                raise error_from(response)
            await asyncio.sleep(delay)

    async def publish(
        self,
        queue: str,
        body: Any,
        *,
        delay_s: float | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        wait: float | None = None,
        expires_in_s: float | None = None,
    ) -> Message:
        return await self._run(
            self._publish(
                queue,
                body,
                delay_s,
                priority,
                idempotency_key,
                headers or {},
                wait,
                self.timeout,
                expires_in_s,
            )
        )

    async def publish_batch(self, queue: str, messages: Iterable[Envelope | Any]) -> list[Message]:
        return await self._run(self._publish_batch(queue, messages))

    async def get(self, message_id: str) -> Message:
        return await self._run(self._get(message_id))

    async def wait(self, message_id: str, timeout: float = 30.0) -> Message:
        return await self._run(self._wait(message_id, timeout, self.timeout))

    async def cancel(self, message_id: str) -> Message:
        return await self._run(self._cancel(message_id))

    async def queues(self) -> list[QueueInfo]:
        return await self._run(self._queues())

    async def queue(self, queue: str) -> QueueInfo:
        return await self._run(self._queue(queue))

    async def pause(self, queue: str) -> QueueInfo:
        return await self._run(self._queue(queue, "pause"))

    async def resume(self, queue: str) -> QueueInfo:
        return await self._run(self._queue(queue, "resume"))

    async def dead(self, queue: str, *, limit: int = 50, cursor: str | None = None) -> DeadPage:
        return await self._run(self._dead(queue, limit, cursor))

    async def redrive(self, queue: str, ids: Iterable[str] | None = None) -> Redriven:
        return await self._run(self._redrive(queue, ids))

    async def schedules(self) -> list[Schedule]:
        return await self._run(self._schedules())

    async def pause_schedule(self, name: str) -> Schedule:
        return await self._run(self._schedule(name, "pause"))

    async def resume_schedule(self, name: str) -> Schedule:
        return await self._run(self._schedule(name, "resume"))
