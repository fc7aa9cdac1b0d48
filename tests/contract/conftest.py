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
from ..rabbit import delete_spool_queues

BACKENDS = ["memory", "sqlite", "amqp"]

# A context manager factory: queues → (client, runtime) on the chosen backend.
Connect = Callable[..., AbstractAsyncContextManager[tuple[Client, Runtime]]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def broker_section(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The [broker] table of the backend; amqp starts the session's private RabbitMQ."""
    if backend == "amqp":
        rabbit = request.getfixturevalue("rabbit")
        return {"backend": "amqp", "amqp_url": rabbit.url}
    return {"backend": backend}


@pytest.fixture
async def connect(
    broker_section: dict[str, Any], tmp_settings: Callable[..., Settings]
) -> AsyncIterator[Connect]:
    used: set[str] = set()

    @asynccontextmanager
    async def build(
        queues: dict[str, dict[str, Any]], **sections: dict[str, Any]
    ) -> AsyncIterator[tuple[Client, Runtime]]:
        broker = {**broker_section, **sections.pop("broker", {})}
        settings = tmp_settings(queues, broker=broker, **sections)
        used.update(queues)
        async with client_for(settings) as pair:
            yield pair

    yield build
    if broker_section["backend"] == "amqp":  # the next test starts on an empty broker
        await delete_spool_queues(broker_section["amqp_url"], sorted(used))
