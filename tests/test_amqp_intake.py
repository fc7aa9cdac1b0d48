"""The amqp Intake on a private RabbitMQ: the consumer changes it starts in the background are
the runtime's task owner's, and its close sees them through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.broker.amqp.intake import Intake
from service.broker.amqp.link import Link
from service.broker.amqp.state import NodeState
from service.broker.amqp.view import View
from service.tasks import TaskOwner

from .conftest import make_settings
from .rabbit import Rabbit, delete_spool_queues

QUEUE = "intake"


@pytest.fixture
async def link(rabbit: Rabbit) -> AsyncIterator[Link]:
    settings = make_settings({QUEUE: {"handler": "tests.handlers:echo"}})
    link = await Link.open(1, rabbit.url)
    try:
        await link.declare(settings.queues, settings.results)
        await link.open_work(QUEUE, 1)
        yield link
    finally:
        await link.close()
        await delete_spool_queues(rabbit.url, [QUEUE])


async def test_close_sees_through_a_pause_that_came_from_another_node(link: Link) -> None:
    settings = make_settings({QUEUE: {"handler": "tests.handlers:echo"}})
    view = View(settings.queues, settings.results, lambda: 0.0)
    state = NodeState("amqp://guest:guest@127.0.0.1/")
    state.attach(link)
    state.caught_up.set()
    owner = TaskOwner()
    intake = Intake(settings.queues, view, state, owner)
    await intake.start_unpaused(link)
    assert link.tags.get(QUEUE)

    # As the events stream delivers another node's pause: the consumers stop in a task the
    # runtime's owner keeps, which has not run yet when the owner is closed.
    intake.follow_pause(QUEUE, True)
    assert len(owner) == 1
    await owner.close(grace_s=10, settle_s=10)

    assert not link.tags.get(QUEUE), "close() returned before the pause took effect"
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and "Intake" in repr(t)]
    assert left == [] and len(owner) == 0
