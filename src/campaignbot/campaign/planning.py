"""Pure schedule computation: when each reminder of each event falls due."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from campaignbot.campaign.model import Campaign, Event, Offset, Status

#: A reminder found a little late by the reconcile tick must still go out, even with
#: `catch_up = "0"` and even when it is the "0" reminder of an event that just started.
LATE_GRACE = timedelta(minutes=5)


@dataclass(frozen=True, order=True)
class PlannedAlert:
    """One reminder of one event at its due instant (aware UTC)."""

    due_utc: datetime
    event_id: str
    reminder: str
    due_local: datetime  # the same instant in the event's zone, for display

    @property
    def key(self) -> str:
        """What + which: each reminder of an event is sent at most once, ever."""
        return f"{self.event_id}:{self.reminder}"


def _wall(day: date, at: time, zone: ZoneInfo) -> datetime:
    # fold=0: an ambiguous wall time (autumn DST) takes its first occurrence; a time in
    # the spring gap is read with the offset before the change (PEP 495), i.e. pushed
    # forward by the gap. Both are what a person reading a local clock would expect.
    return datetime.combine(day, at, tzinfo=zone)


def event_start(event: Event, send_at: time) -> datetime:
    """The instant the "0" reminder fires: the event time, or `send_at` on an all-day date."""
    if isinstance(event.when, datetime):
        return event.when.astimezone(UTC)  # aware since validation
    return _wall(event.when, send_at, event.timezone).astimezone(UTC)


def event_deadline(event: Event, send_at: time) -> datetime:
    """After this instant the event has happened and no reminder of it may go out."""
    if isinstance(event.when, datetime):
        return event_start(event, send_at) + LATE_GRACE
    # an all-day event lasts until local midnight
    return _wall(event.when + timedelta(days=1), time(0), event.timezone).astimezone(UTC)


def reminder_due(event: Event, offset: Offset, send_at: time) -> datetime:
    """When `offset` before `event` falls due, as aware UTC.

    Day and week offsets are calendar days in the event's zone: "1d" before a 10:00
    Helsinki event is 10:00 Helsinki the day before, even across a DST change (which
    is 23 or 25 hours earlier). Hour and minute offsets are elapsed time. All-day
    events anchor at `send_at` local time.
    """
    start = event_start(event, send_at)
    if not offset.is_calendar:
        return start - offset.duration
    local = start.astimezone(event.timezone)
    day = local.date() - timedelta(days=offset.days)
    return _wall(day, local.timetz().replace(tzinfo=None), event.timezone).astimezone(UTC)


def alerts_for_event(event: Event, send_at: time) -> list[PlannedAlert]:
    """Every reminder of a scheduled event; postponed and cancelled events have none."""
    if event.status is not Status.SCHEDULED:
        return []
    alerts = []
    for offset in event.reminders:
        due = reminder_due(event, offset, send_at)
        alerts.append(PlannedAlert(due, event.id, offset.label, due.astimezone(event.timezone)))
    return alerts


def plan_alerts(
    campaign: Campaign,
    *,
    since: datetime,
    until: datetime | None = None,
    events: Iterable[Event] | None = None,
) -> list[PlannedAlert]:
    """Alerts due in [since, until), in due order; `since` is usually now."""
    planned = [
        alert
        for event in (campaign.events if events is None else events)
        for alert in alerts_for_event(event, campaign.campaign.send_at)
        if alert.due_utc >= since and (until is None or alert.due_utc < until)
    ]
    return sorted(planned)
