"""Queue figures, pause / resume, dead letters and redrive."""

from __future__ import annotations

import dataclasses

from quart import Blueprint, Response, request

from ..broker.base import QueueStats
from ..model import RedriveRequest
from .auth import requires
from .bodies import Counts, DeadPage, Depth, QueueFigures, QueueList, Redriven
from .common import json_response, query_integer, read_json
from .services import broker, node, queue_directory

bp = Blueprint("queues", __name__)

DEAD_PAGE_DEFAULT = 50
DEAD_PAGE_MAX = 1000


def figures(stats: QueueStats, consumers: int) -> QueueFigures:
    """A broker's figures as the API answers them. Depth and Counts take the broker's by
    keyword: a figure a broker added or dropped would fail here, which
    tests/test_api_types.py sees first, not be answered unseen by the document."""
    return QueueFigures(
        name=stats.name,
        paused=stats.paused,
        consumers=consumers,
        max_size=stats.max_size,
        depth=Depth(**stats.depth),
        counts=Counts(**dataclasses.asdict(stats.counts)),
    )


async def queue_figures(name: str) -> QueueFigures:
    return figures(await broker().stats(name), node().live_consumers(name))


@bp.get("/v1/queues")
@requires("read")
async def list_queues() -> Response:
    names = queue_directory().names
    return json_response(QueueList([await queue_figures(name) for name in names]))


@bp.get("/v1/queues/<queue>")
@requires("read")
async def get_queue(queue: str) -> Response:
    return json_response(await queue_figures(queue))


@bp.post("/v1/queues/<queue>/pause")
@requires("admin")
async def pause(queue: str) -> Response:
    return json_response(figures(await broker().pause(queue), node().live_consumers(queue)))


@bp.post("/v1/queues/<queue>/resume")
@requires("admin")
async def resume(queue: str) -> Response:
    return json_response(figures(await broker().resume(queue), node().live_consumers(queue)))


@bp.get("/v1/queues/<queue>/dead")
@requires("read")
async def dead_letters(queue: str) -> Response:
    limit = query_integer("limit", DEAD_PAGE_DEFAULT, 1, DEAD_PAGE_MAX)
    page = await broker().dead(queue, limit, request.args.get("cursor") or None)
    return json_response(DeadPage([m.view() for m in page.messages], page.next_cursor))


@bp.post("/v1/queues/<queue>/dead/redrive")
@requires("admin")
async def redrive(queue: str) -> Response:
    queue_directory().exists(queue)  # 404 before reading the body
    body = await read_json(RedriveRequest, optional=True)
    done = await broker().redrive(queue, body.ids)
    return json_response(Redriven(done.redriven, done.skipped))
