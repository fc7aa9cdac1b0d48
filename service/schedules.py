"""The tick arithmetic of schedules, as pure functions of two instants (no clock, no I/O),
so the scheduler (scheduler.py), its tests and every node compute the same ticks.

A cron expression is read by croniter (five fields, or six with seconds last) in the
schedule's time zone, from the IANA database (zoneinfo, with the tzdata package where the
system has none). Across a DST change it behaves as Debian's cron does:
- a schedule with a fixed hour whose wall time does not exist (the skipped spring hour)
  runs once, an hour later by the clock; one whose wall time happens twice (the repeated
  autumn hour) runs once, at the first;
- a schedule whose hour field is `*` keeps its pace in real time: every five minutes stays
  every five minutes through either change.
Ticks are instants in UTC: the same tick is the same key on every node, whatever its
local offset (tick_key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# Five fields (minute hour day month weekday), or six with seconds as croniter reads them.
FIELD_COUNTS = (5, 6)
# No time zone moves its clocks twice within a day: the offsets a day either side of an
# instant bound every offset a wall time near it can have.
_OFFSET_SPAN = timedelta(days=1)
_STEP_BACK = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Cron:
    """A validated expression in a time zone."""

    expression: str
    zone: tzinfo

    @classmethod
    def parse(cls, expression: str, timezone: str) -> Cron:
        """ValueError saying what is wrong with the expression or the zone."""
        fields = expression.split()
        if len(fields) not in FIELD_COUNTS:
            raise ValueError(
                f"{expression!r} is not a cron expression: expected 5 fields (minute hour "
                f"day month weekday) or 6 (with seconds last), got {len(fields)}"
            )
        if not croniter.is_valid(expression):
            raise ValueError(f"{expression!r} is not a valid cron expression")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{timezone!r} is not a time zone of the IANA database (e.g. 'Europe/Berlin', "
                "'UTC')"
            ) from None
        return cls(expression, zone)

    @property
    def keeps_real_pace(self) -> bool:
        """Hour field `*`: through a DST change it runs by real time, not by wall time."""
        return self.expression.split()[1] == "*"


def ticks_between(cron: Cron, after: datetime, until: datetime) -> list[datetime]:
    """Every tick t with after < t <= until, in order, as UTC instants."""
    if until <= after:
        return []
    # A schedule that keeps real pace has no tick at a skipped wall time, so the offsets
    # at both ends cover its instants; a fixed-hour one's skipped wall time becomes an
    # instant an hour on, which a window just after a change must still see: it looks a
    # day either side (a few more steps of a schedule that runs a few times an hour).
    ends = (after, until) if cron.keeps_real_pace else (after - _OFFSET_SPAN, until + _OFFSET_SPAN)
    offsets = [at.astimezone(cron.zone).utcoffset() or timedelta(0) for at in (*ends, after, until)]
    # The wall times whose instants can fall in (after, until]: a wall time w is the
    # instant w - offset, with the offset somewhere between the least and the largest.
    first_wall = _naive_utc(after) + min(offsets) - _STEP_BACK
    last_wall = _naive_utc(until) + max(offsets)
    found: set[datetime] = set()
    walls = croniter(cron.expression, first_wall)
    while (wall := walls.get_next(datetime)) <= last_wall:
        for instant in _instants_of(cron, wall):
            if after < instant <= until:
                found.add(instant)
    return sorted(found)


def next_tick(cron: Cron, after: datetime) -> datetime:
    """The first tick after `after` (a schedule ticks at least once a year). Looked for in
    growing windows: a per-second schedule's answer is in the first, a yearly one's in the
    tenth or so."""
    window = timedelta(seconds=2)
    while True:
        ticks = ticks_between(cron, after, after + window)
        if ticks:
            return ticks[0]
        after, window = after + window, min(window * 8, timedelta(days=400))


def tick_to_catch_up(
    cron: Cron, last_run: datetime | None, now: datetime, *, catch_up: bool
) -> datetime | None:
    """At a start: the one missed tick to run now, if the schedule catches up and ran
    before (a schedule that never ran has missed nothing). Only the latest is run."""
    if not catch_up or last_run is None:
        return None
    missed = ticks_between(cron, last_run, now)
    return missed[-1] if missed else None


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of a tick's message: the same on every node."""
    return f"schedule:{name}:{iso(tick)}"


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _naive_utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _instants_of(cron: Cron, wall: datetime) -> list[datetime]:
    """The instants a wall time stands for: one; for a wall time that happens twice, the
    first (or both, for a schedule that keeps real pace); for one that does not happen,
    the instant an hour on (fold 0 takes the offset before the change)."""
    first = wall.replace(tzinfo=cron.zone, fold=0).astimezone(UTC)
    if not cron.keeps_real_pace:
        return [first]
    second = wall.replace(tzinfo=cron.zone, fold=1).astimezone(UTC)
    if second == first:
        return [first]
    # Repeated: both are real. Skipped (the second lies before the first): the wall time
    # never happens, and keeping pace means not inventing it.
    return [first, second] if second > first else []
