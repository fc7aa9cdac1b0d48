"""The schedules' tick arithmetic (service/schedules.py), as pure functions of the clock:
which ticks fall between two instants, in the schedule's time zone, across DST changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from service.schedules import Cron, tick_key, tick_to_catch_up, ticks_between

BERLIN = ZoneInfo("Europe/Berlin")
# Around the 2026 changes in Berlin (01:00 UTC both): 29 March 02:00 → 03:00,
# 25 October 03:00 → 02:00. Within hours either side: croniter takes ~1 ms a step.
SPRING = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
AUTUMN = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
EXPRESSIONS = ["*/5 * * * *", "30 2 * * *", "0 * * * *", "15,45 1-3 * * *", "0 3 * * 0"]

offsets = st.integers(-3 * 3600, 3 * 3600).map(lambda s: timedelta(seconds=s))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.sampled_from([SPRING, AUTUMN]), offsets, offsets, offsets)
def test_ticks_split_anywhere_are_the_same_ticks(
    expr: str, centre: datetime, a: timedelta, b: timedelta, c: timedelta
) -> None:
    """Two nodes (or a node before and after a restart) that cut time at different points
    see the same ticks: no tick twice, none lost, in order."""
    start, middle, end = (centre + d for d in sorted((a, b, c)))
    cron = Cron(expr, BERLIN)
    whole = ticks_between(cron, start, end)
    assert whole == ticks_between(cron, start, middle) + ticks_between(cron, middle, end)
    assert whole == sorted(set(whole))
    assert all(start < t <= end and t.tzinfo is UTC for t in whole)


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_every_tick_is_the_expressions_in_berlin_wall_time(expr: str) -> None:
    cron = Cron(expr, BERLIN)
    for centre in (SPRING, AUTUMN):
        ticks = ticks_between(cron, centre - timedelta(hours=4), centre + timedelta(hours=4))
        assert ticks
        for tick in ticks:
            assert matches_wall_time(expr, tick), tick


def matches_wall_time(expr: str, tick: datetime) -> bool:
    """The tick is the expression's in Berlin's wall time, or an hour on from a wall time
    that the spring change skipped."""
    wall = tick.astimezone(BERLIN).replace(tzinfo=None)
    if matches(expr, wall):
        return True
    skipped = wall - timedelta(hours=1)
    round_trip = skipped.replace(tzinfo=BERLIN).astimezone(UTC).astimezone(BERLIN)
    return round_trip.replace(tzinfo=None) != skipped and matches(expr, skipped)


def matches(expr: str, wall: datetime) -> bool:
    return bool(croniter.match(expr, wall))


def test_a_daily_tick_in_the_skipped_spring_hour_runs_once_that_day() -> None:
    """02:30 does not exist in Berlin on 29 March 2026: the day still has one run."""
    cron = Cron("30 2 * * *", BERLIN)
    day = ticks_between(cron, SPRING - timedelta(hours=12), SPRING + timedelta(hours=12))
    assert len(day) == 1


def test_a_daily_tick_in_the_repeated_autumn_hour_runs_once_that_day() -> None:
    """02:30 happens twice in Berlin on 25 October 2026: the day still has one run."""
    cron = Cron("30 2 * * *", BERLIN)
    day = ticks_between(cron, AUTUMN - timedelta(hours=12), AUTUMN + timedelta(hours=12))
    assert len(day) == 1


def test_every_five_minutes_keeps_its_pace_through_the_changes() -> None:
    cron = Cron("*/5 * * * *", BERLIN)
    for centre in (SPRING, AUTUMN):
        ticks = ticks_between(cron, centre - timedelta(hours=3), centre + timedelta(hours=3))
        assert len(ticks) == 72
        assert {b - a for a, b in itertools.pairwise(ticks)} == {timedelta(minutes=5)}


def test_seconds_field_gives_a_tick_per_second() -> None:
    cron = Cron("* * * * * *", ZoneInfo("UTC"))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert len(ticks_between(cron, start, start + timedelta(seconds=10))) == 10


def test_catch_up_runs_only_the_latest_missed_tick() -> None:
    cron = Cron("0 * * * *", ZoneInfo("UTC"))
    last = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 5, 30, tzinfo=UTC)
    assert tick_to_catch_up(cron, last, now, catch_up=True) == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert tick_to_catch_up(cron, last, now, catch_up=False) is None
    # Never run before: nothing was missed.
    assert tick_to_catch_up(cron, None, now, catch_up=True) is None
    # Nothing missed since the last run.
    assert tick_to_catch_up(cron, now - timedelta(minutes=1), now, catch_up=True) is None


def test_tick_key_names_the_schedule_and_the_tick_in_utc() -> None:
    tick = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert tick_key("nightly", tick) == "schedule:nightly:2026-10-25T00:30:00Z"


def test_bad_expressions_and_zones_are_refused_with_a_reason() -> None:
    for bad in ("* * *", "61 * * * *", "not cron", "* * * * * * * *"):
        with pytest.raises(ValueError):
            Cron.parse(bad, "UTC")
    with pytest.raises(ValueError, match="time zone"):
        Cron.parse("* * * * *", "Mars/Olympus")
