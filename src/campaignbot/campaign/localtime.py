"""Local wall-clock times that do not exist (DST gap) or exist twice (DST fold).

An organizer writes `when = 2027-03-28T03:30:00` with `timezone = "Europe/Helsinki"`;
that minute never happens (clocks jump from 03:00 to 04:00), and `2026-10-25T03:30`
happens twice. Guessing would move an alert by an hour, so both are errors whose
text, times and offsets come from zoneinfo itself (no table of rules here).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant in (before, after] with `after`'s offset (binary search)."""
    target = after.astimezone(zone).utcoffset()
    lo, hi = before, after
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def dst_problem(wall: datetime, zone: ZoneInfo) -> str | None:
    """Why the naive local `wall` time is not one instant in `zone`, or None if it is."""
    wall = wall.replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    first_offset, second_offset = first.utcoffset(), second.utcoffset()
    if first_offset == second_offset or first_offset is None or second_offset is None:
        return None
    shown = f"{wall:%H:%M}"
    day = f"{wall:%Y-%m-%d}"
    roundtrip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if roundtrip != wall:
        # A gap: the wall time is skipped. PEP 495 reads fold=0 with the offset before
        # the change, fold=1 with the one after; the jump lies between those instants.
        lo = min(first, second).astimezone(UTC) - timedelta(hours=1)
        hi = max(first, second).astimezone(UTC) + timedelta(hours=1)
        instant = _transition(lo, hi, zone)
        old = lo.astimezone(zone).utcoffset()
        assert old is not None
        jump_from = (instant.replace(tzinfo=None) + old).strftime("%H:%M")
        jump_to = instant.astimezone(zone).strftime("%H:%M")
        return (
            f"{shown} does not exist in {zone.key} on {day}: "
            f"clocks jump from {jump_from} to {jump_to}"
        )
    return (
        f"{shown} happens twice in {zone.key} on {day}: "
        f"write {_offset_text(first_offset)} or {_offset_text(second_offset)}"
    )


__all__ = ["dst_problem"]
