"""The contract suite: SPEC's delivery behaviour, through the HTTP API, on every backend.

Each backend is a param of `backend`. A backend whose server is missing here (RabbitMQ)
skips with the reason; CI sets the variable that turns that skip into a failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from service import Runtime, Settings

from ..conftest import client_for

BACKENDS = ["memory", "sqlite"]

# A context manager factory: queues → (client, runtime) on the chosen backend.
Connect = Callable[..., AbstractAsyncContextManager[tuple[Client, Runtime]]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def connect(backend: str, tmp_settings: Callable[..., Settings]) -> Connect:
    @asynccontextmanager
    async def build(
        queues: dict[str, dict[str, Any]], **sections: dict[str, Any]
    ) -> AsyncIterator[tuple[Client, Runtime]]:
        broker = {"backend": backend, **sections.pop("broker", {})}
        settings = tmp_settings(queues, broker=broker, **sections)
        async with client_for(settings) as pair:
            yield pair

    return build
