"""python -m tests.bench.sse_readers URL COUNT: COUNT clients reading URL/v1/events at full
speed until standard input closes, then one JSON line per stream on standard output.

A process of its own (pinned beside the load generator) so that reading the streams costs
the server's CPU nothing. Events are counted by their `event:` lines with bytes.count, which
keeps up with tens of MB/s; a line split between two reads is counted once (the tail of
each read is carried over).
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
from dataclasses import asdict, dataclass
from typing import cast
from urllib.parse import urlsplit

MESSAGE = b"event: message\n"
QUEUES = b"event: queues\n"
CARRY = max(len(MESSAGE), len(QUEUES)) - 1  # a tail that cannot hold a whole marker


@dataclass
class Stream:
    status: str = ""  # the response's status line
    received: int = 0  # bytes
    messages: int = 0
    queues: int = 0
    ended: bool = False  # the server closed it (before we stopped reading)
    tail: bytes = b""

    def feed(self, data: bytes) -> None:
        if not self.status:
            self.status = data.split(b"\r\n", 1)[0].decode("latin1")
        self.received += len(data)
        window = self.tail + data
        self.messages += window.count(MESSAGE)
        self.queues += window.count(QUEUES)
        self.tail = window[-CARRY:]


def main(argv: list[str]) -> int:
    url, count = urlsplit(argv[0]), int(argv[1])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    request = f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    selector = selectors.DefaultSelector()
    streams: list[Stream] = []
    for _ in range(count):
        sock = socket.create_connection((host, port))
        sock.sendall(request.encode())
        sock.setblocking(False)
        stream = Stream()
        streams.append(stream)
        selector.register(sock, selectors.EVENT_READ, stream)
    selector.register(sys.stdin, selectors.EVENT_READ, None)
    reading = True
    while reading:
        for key, _ in selector.select():
            if key.data is None:  # standard input: readable at EOF
                reading = False
                continue
            stream = key.data
            sock = cast(socket.socket, key.fileobj)
            try:
                data = sock.recv(1 << 20)
            except ConnectionError:
                data = b""
            if data:
                stream.feed(data)
            else:
                stream.ended = True
                selector.unregister(sock)
                sock.close()
    for stream in streams:
        doc = asdict(stream)
        del doc["tail"]
        print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
