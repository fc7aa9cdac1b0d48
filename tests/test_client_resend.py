"""A kept-alive connection the server closes as the next request goes out on it: the client
sends that request once more on a new connection (core.py, RESENT_ONCE), as urllib3 does.

A real socket server, answering as a server that closes a connection after an answer would
look from the client's side: the second request on the first connection gets no answer."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from service.client import Client
from service.client.errors import ConnectionFailed

ANSWER = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{"queues":[]}'
)


def serve(listener: socket.socket, script: list[str]) -> None:
    """Takes requests in order, each as `script` says: "answer" it, or "drop" it (the
    connection closed with it unanswered)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            while script and conn.recv(65536):
                if script.pop(0) == "drop":
                    break
                conn.sendall(ANSWER)


@pytest.fixture
def url_dropping(request: pytest.FixtureRequest) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(listener, list(request.param)), daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.mark.parametrize("url_dropping", [["answer", "drop", "answer"]], indirect=True)
def test_a_request_on_a_connection_closed_under_it_is_sent_once_more(url_dropping: str) -> None:
    with Client(url_dropping, token="") as spool:
        assert spool.queues() == []
        assert spool.queues() == []  # its connection is closed under it, then a new one


@pytest.mark.parametrize("url_dropping", [["answer", "drop", "drop", "answer"]], indirect=True)
def test_a_request_is_sent_again_only_once(url_dropping: str) -> None:
    with Client(url_dropping, token="") as spool:
        assert spool.queues() == []
        with pytest.raises(ConnectionFailed):
            spool.queues()  # closed under it, then its one resend unanswered too: no loop
