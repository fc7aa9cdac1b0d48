"""The reference of B1/B2: the least a queue service can do per request, as a raw ASGI app on
the same Hypercorn (same config, same event loop as `python -m service`).

`POST /v1/queues/{q}/messages` and `…/batch` read the body, decode it with msgspec, build
each message (UUIDv7 id, raw body, time), `put_nowait` it on an asyncio.Queue that a task
drains, and answer 202 with the ids. No validation beyond the JSON shape, no metrics, no log.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import msgspec
import uuid_utils
from hypercorn.asyncio import serve
from hypercorn.config import Config


class Envelope(msgspec.Struct):
    body: msgspec.Raw


class Batch(msgspec.Struct):
    messages: list[Envelope]


class Message(msgspec.Struct):
    id: str
    queue: str
    status: str
    body: msgspec.Raw
    created_at: float


_one = msgspec.json.Decoder(Envelope)
_batch = msgspec.json.Decoder(Batch)
_encode = msgspec.json.Encoder().encode
JSON_HEADERS = [(b"content-type", b"application/json")]


class RawQueueApp:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.taken = 0

    async def drain(self) -> None:
        while True:
            await self.queue.get()
            self.taken += 1

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            task: asyncio.Task[None] | None = None
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    task = asyncio.create_task(self.drain())
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    if task is not None:
                        task.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        body = b""
        more = True
        while more:
            event = await receive()
            body += event.get("body", b"")
            more = event.get("more_body", False)
        if scope["method"] == "GET":  # /healthz
            await respond(send, 200, b'{"status":"ok"}')
            return
        queue = path.split("/")[3] if path.count("/") >= 4 else "default"
        now = time.time()
        if path.endswith("/batch"):
            out = []
            for env in _batch.decode(body).messages:
                msg = Message(str(uuid_utils.uuid7()), queue, "queued", env.body, now)
                self.queue.put_nowait(msg)
                out.append(msg)
            await respond(send, 202, _encode({"messages": out}))
            return
        msg = Message(str(uuid_utils.uuid7()), queue, "queued", _one.decode(body).body, now)
        self.queue.put_nowait(msg)
        await respond(send, 202, _encode(msg))


async def respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.workers = 1
    asyncio.run(serve(RawQueueApp(), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
