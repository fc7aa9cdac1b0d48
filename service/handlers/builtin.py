"""Built-in handlers, so the default config does real work out of the box.

- echo: returns the body (a smoke test and a template).
- checksum: CPU-bound hashing in pure Python, the kind of work that wants mode = "process".
- webhook: POSTs the body to the URL in the queue's options (never a URL from a message,
  so a publisher cannot make the server call an address of its choosing).
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from ..model import HandlerContext

MAX_ROUNDS = 10_000_000


def echo(body: Any) -> Any:
    return body


def checksum(body: Any) -> dict[str, Any]:
    """SHA-256 of `data`, re-hashed `rounds` times (a key-stretching loop).

    Body: {"data": "text", "rounds": 1000} or any JSON value (hashed once, as its JSON text).
    Each round hashes 32 bytes, so the loop holds the GIL: threads cannot run it in parallel,
    processes can.
    """
    if isinstance(body, dict) and "data" in body:
        data = body["data"]
        rounds = body.get("rounds", 1)
        if not isinstance(data, str):
            raise TypeError("checksum: 'data' must be a string")
        if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= MAX_ROUNDS:
            raise ValueError(f"checksum: 'rounds' must be an integer from 1 to {MAX_ROUNDS}")
        payload = data.encode()
    else:
        import msgspec

        payload, rounds = msgspec.json.encode(body), 1
    digest = hashlib.sha256(payload).digest()
    for _ in range(rounds - 1):
        digest = hashlib.sha256(digest).digest()
    return {"sha256": digest.hex(), "rounds": rounds}


class WebhookError(Exception):
    """The webhook answered with a status that is not 2xx."""


async def webhook(body: Any, context: HandlerContext) -> dict[str, Any]:
    """POST the body as JSON to options.url; a non-2xx answer fails the attempt.

    Options: url (required), timeout_s (default 5), headers (a table of extra headers).
    The message id goes along as `Idempotency-Key`, so the receiver can drop a redelivery.
    """
    url = context.options.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("webhook: the queue's options.url must be an http(s) URL")
    timeout = float(context.options.get("timeout_s", 5))
    headers = {str(k): str(v) for k, v in dict(context.options.get("headers", {})).items()}
    headers["Idempotency-Key"] = context.id
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        response = await client.post(url, json=body, headers=headers)
    if not 200 <= response.status_code < 300:
        raise WebhookError(f"{url} answered {response.status_code}")
    return {"status": response.status_code}
