"""The schedules (config's [schedules.NAME]): their next and last runs; pause and resume."""

from __future__ import annotations

from quart import Blueprint, Response

from ..errors import UnknownSchedule
from ..scheduler import Scheduler
from .auth import requires
from .bodies import ScheduleList
from .common import json_response
from .services import scheduler

bp = Blueprint("schedules", __name__)


@bp.get("/v1/schedules")
@requires("read")
async def list_schedules() -> Response:
    found = scheduler()
    return json_response(ScheduleList(await found.views() if found else []))


@bp.get("/v1/schedules/<name>")
@requires("read")
async def get_schedule(name: str) -> Response:
    return json_response(await _known().view(name))


@bp.post("/v1/schedules/<name>/pause")
@requires("admin")
async def pause(name: str) -> Response:
    return json_response(await _known().set_paused(name, True))


@bp.post("/v1/schedules/<name>/resume")
@requires("admin")
async def resume(name: str) -> Response:
    return json_response(await _known().set_paused(name, False))


def _known() -> Scheduler:
    found = scheduler()
    if found is None:
        raise UnknownSchedule("no schedules are configured")
    return found
