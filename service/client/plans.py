"""Every API call described once, as a plan: a generator that yields the HTTP calls it needs
and turns the answers into typed values. core.py's Client and AsyncClient send them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from .errors import retry_after
from .models import DeadPage, Envelope, Message, QueueInfo, Redriven, Schedule

T = TypeVar("T")

MAX_WAIT_CHUNK_S = 60.0  # the server's longest long-poll
RETRY_STATUSES = frozenset({429, 503})
FALLBACK_DELAY_S = 1.0  # when a 429/503 carries no Retry-After

NO_BODY = object()


# The longest Prefer: wait the server honours on a publish (api/messages.py says the same).
MAX_PUBLISH_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    json: Any = NO_BODY
    params: dict[str, str] | None = None
    timeout: float | None = None
    headers: dict[str, str] | None = None


Plan = Generator[Call, httpx.Response, T]


class RetryBudget:
    """How many more 429/503 answers to wait out, and for how long in all."""

    def __init__(self, retries: int, budget_s: float) -> None:
        self.left = retries
        self.budget_s = budget_s

    def delay(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or None: give up and raise."""
        if response.status_code not in RETRY_STATUSES or self.left <= 0:
            return None
        hint = retry_after(response)
        wait = FALLBACK_DELAY_S if hint is None else hint
        if wait > self.budget_s:
            return None
        self.left -= 1
        self.budget_s -= wait
        return wait


def _decode(response: httpx.Response, kind: type[T]) -> T:
    return msgspec.json.decode(response.content, type=kind)


def _segment(value: str) -> str:
    return quote(value, safe="")


def new_idempotency_key() -> str:
    return f"spool-client-{uuid.uuid4().hex}"


class _Plans:
    """Every API method as a plan; the drivers below send the calls."""

    def _publish(
        self,
        queue: str,
        body: Any,
        delay_s: float | None,
        priority: int | None,
        idempotency_key: str | None,
        headers: dict[str, str],
        wait: float | None = None,
        request_timeout: float | None = None,
        expires_in_s: float | None = None,
    ) -> Plan[Message]:
        envelope = Envelope(
            body=body,
            delay_s=delay_s,
            priority=priority,
            idempotency_key=idempotency_key,
            headers=headers,
            expires_in_s=expires_in_s,
        )
        path = f"/v1/queues/{_segment(queue)}/messages"
        doc = envelope.to_json(new_idempotency_key())
        if wait is None:
            response = yield Call("POST", path, doc)
        else:
            # The server holds the answer up to `wait` s: the request may take that long.
            timeout = None if request_timeout is None else wait + request_timeout
            prefer = {"Prefer": f"wait={wait:g}"}
            response = yield Call("POST", path, doc, timeout=timeout, headers=prefer)
        return _decode(response, Message)

    def _publish_batch(self, queue: str, messages: Iterable[Envelope | Any]) -> Plan[list[Message]]:
        docs = [
            (m if isinstance(m, Envelope) else Envelope(body=m)).to_json(new_idempotency_key())
            for m in messages
        ]
        path = f"/v1/queues/{_segment(queue)}/messages/batch"
        response = yield Call("POST", path, {"messages": docs})
        return _decode(response, _Batch).messages

    def _get(self, message_id: str) -> Plan[Message]:
        response = yield Call("GET", f"/v1/messages/{_segment(message_id)}")
        return _decode(response, Message)

    def _wait(self, message_id: str, timeout: float, request_timeout: float) -> Plan[Message]:
        """Long-polls in chunks the server accepts until the message is final or time is up."""
        deadline = time.monotonic() + timeout
        path = f"/v1/messages/{_segment(message_id)}"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                response = yield Call("GET", path)
                return _decode(response, Message)
            chunk = max(0.001, min(MAX_WAIT_CHUNK_S, remaining))
            response = yield Call(
                "GET", path, params={"wait": f"{chunk:.3f}"}, timeout=chunk + request_timeout
            )
            message = _decode(response, Message)
            if message.final or time.monotonic() >= deadline:
                return message

    def _cancel(self, message_id: str) -> Plan[Message]:
        response = yield Call("DELETE", f"/v1/messages/{_segment(message_id)}")
        return _decode(response, Message)

    def _queues(self) -> Plan[list[QueueInfo]]:
        response = yield Call("GET", "/v1/queues")
        return _decode(response, _Queues).queues

    def _queue(self, queue: str, action: str = "") -> Plan[QueueInfo]:
        path = f"/v1/queues/{_segment(queue)}"
        response = yield Call("POST", f"{path}/{action}") if action else Call("GET", path)
        return _decode(response, QueueInfo)

    def _dead(self, queue: str, limit: int, cursor: str | None) -> Plan[DeadPage]:
        params = {"limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        response = yield Call("GET", f"/v1/queues/{_segment(queue)}/dead", params=params)
        return _decode(response, DeadPage)

    def _redrive(self, queue: str, ids: Iterable[str] | None) -> Plan[Redriven]:
        body = {} if ids is None else {"ids": list(ids)}
        response = yield Call("POST", f"/v1/queues/{_segment(queue)}/dead/redrive", body)
        return _decode(response, Redriven)

    def _schedules(self) -> Plan[list[Schedule]]:
        response = yield Call("GET", "/v1/schedules")
        return _decode(response, _Schedules).schedules

    def _schedule(self, name: str, action: str = "") -> Plan[Schedule]:
        path = f"/v1/schedules/{_segment(name)}"
        response = yield Call("POST", f"{path}/{action}") if action else Call("GET", path)
        return _decode(response, Schedule)


class _Schedules(msgspec.Struct):
    schedules: list[Schedule]


class _Batch(msgspec.Struct):
    messages: list[Message]


class _Queues(msgspec.Struct):
    queues: list[QueueInfo]
