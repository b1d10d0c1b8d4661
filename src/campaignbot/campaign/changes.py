"""Pure change detection: what saving an edited campaign file will do to the schedule.

`plan_changes(old, new, ...)` compares two event lists (the schedule the database last
recorded, or an older file) and says which reminders are added, moved, removed or will
be skipped as stale, and which events get a change notice. Time, the reminders already
fired and the events whose subscribers were already alerted are arguments; nothing
here reads a clock, a file or a database (`plan --changes` is the thin adapter).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum

from campaignbot.campaign.firing import Fire, due_actions
from campaignbot.campaign.model import Event, Status
from campaignbot.campaign.planning import PlannedAlert, alerts_for_event, event_start


class ChangeKind(StrEnum):
    ADDED = "added"
    MOVED = "moved"
    REMOVED = "removed"
    STALE = "stale"
    NOTICE = "notice"


class NoticeKind(StrEnum):
    RESCHEDULED = "rescheduled"
    POSTPONED = "postponed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class PlanChange:
    """One line of `plan --changes`: a reminder (or, for a notice, the event) and its times."""

    change: ChangeKind
    event_id: str
    reminder: str | None
    due_utc: datetime | None  # before the edit (a notice: the event's old start)
    new_due_utc: datetime | None  # after the edit (a notice: the new start)
    notice: NoticeKind | None = None


def _shown(event: Event, send_at: time) -> tuple[str, Status]:
    # what a subscriber sees: the local date and HH:MM, or the date of an all-day event
    start = event_start(event, send_at).astimezone(event.timezone)
    day = start.strftime("%Y-%m-%d") if event.all_day else start.strftime("%Y-%m-%d %H:%M")
    return day, event.status


def notice_for(old: Event | None, new: Event | None, send_at: time) -> NoticeKind | None:
    """The notice subscribers get when `old` becomes `new` (None: no notice).

    The same rule as the service: a change of the displayed date or time, of the
    status, or the event vanishing from the file.
    """
    if old is None or old.status is Status.CANCELLED:
        return None
    if new is None or new.status is Status.CANCELLED:
        return NoticeKind.CANCELLED
    if _shown(old, send_at) == _shown(new, send_at):
        return None
    if new.status is Status.POSTPONED:
        return None if old.status is Status.POSTPONED else NoticeKind.POSTPONED
    return NoticeKind.RESCHEDULED


def _pending(
    events: Iterable[Event], send_at: time, fired: Collection[str]
) -> dict[str, PlannedAlert]:
    return {
        alert.key: alert
        for event in events
        for alert in alerts_for_event(event, send_at)
        if alert.key not in fired
    }


def _goes_out(
    alerts: dict[str, PlannedAlert],
    events: dict[str, Event],
    *,
    now: datetime,
    catch_up: timedelta,
    send_at: time,
) -> set[str]:
    """Of the alerts, those that will go out: future ones, and the overdue ones the
    service would still fire (the same pure rule as its tick: `firing.due_actions`)."""
    out = {key for key, alert in alerts.items() if alert.due_utc > now}
    starts = {event_id: event_start(event, send_at) for event_id, event in events.items()}
    actions = due_actions(alerts.values(), starts, (), now=now, catch_up=catch_up)
    out.update(action.alert.key for action in actions if isinstance(action, Fire))
    return out


def plan_changes(
    old: Iterable[Event],
    new: Iterable[Event],
    *,
    send_at: time,
    now: datetime,
    catch_up: timedelta,
    fired: Collection[str] = (),
    alerted: Collection[str] = (),
) -> list[PlanChange]:
    """What replacing the `old` events by the `new` ones does, at `now`.

    `fired`: alert keys already in the ledger (fired or skipped); they are never sent
    again, whatever the edit. `alerted`: events whose subscribers already got an alert,
    the only ones a change notice goes to.
    """
    now = now.astimezone(UTC)
    old_events = {event.id: event for event in old}
    new_events = {event.id: event for event in new}
    before = _pending(old_events.values(), send_at, fired)
    after = _pending(new_events.values(), send_at, fired)
    # what the old schedule still had ahead of it; overdue ones were dealt with already
    ahead = {key for key, alert in before.items() if alert.due_utc > now}
    going = _goes_out(after, new_events, now=now, catch_up=catch_up, send_at=send_at)
    changes: list[PlanChange] = []
    for key, alert in after.items():
        old_alert = before.get(key) if key in ahead else None
        if old_alert is not None and old_alert.due_utc == alert.due_utc:
            continue  # unchanged
        if old_alert is None and alert.due_utc <= now and key in before:
            continue  # overdue before the edit too: the service already dealt with it
        if key not in going:
            kind = ChangeKind.STALE
        else:
            kind = ChangeKind.ADDED if old_alert is None else ChangeKind.MOVED
        old_due = old_alert.due_utc if old_alert else None
        changes.append(PlanChange(kind, alert.event_id, alert.reminder, old_due, alert.due_utc))
    for key in sorted(ahead - after.keys(), key=lambda k: before[k].due_utc):
        alert = before[key]
        changes.append(
            PlanChange(ChangeKind.REMOVED, alert.event_id, alert.reminder, alert.due_utc, None)
        )
    for event_id in [*old_events, *(e for e in new_events if e not in old_events)]:
        if event_id not in alerted:
            continue
        before_event, after_event = old_events.get(event_id), new_events.get(event_id)
        notice = notice_for(before_event, after_event, send_at)
        if notice is None:
            continue
        changes.append(
            PlanChange(
                ChangeKind.NOTICE,
                event_id,
                None,
                event_start(before_event, send_at) if before_event else None,
                event_start(after_event, send_at) if after_event else None,
                notice,
            )
        )
    order = {kind: i for i, kind in enumerate(ChangeKind)}
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(
        changes,
        key=lambda c: (order[c.change], c.new_due_utc or c.due_utc or far, c.event_id),
    )


def alerted_events(old: Iterable[Event], send_at: time, fired: Collection[str]) -> set[str]:
    """Events with at least one reminder in `fired`: their subscribers were alerted."""
    return {
        alert.event_id
        for event in old
        for alert in alerts_for_event(event, send_at)
        if alert.key in fired
    }


def overdue_keys(events: Iterable[Event], send_at: time, *, now: datetime) -> set[str]:
    """Alert keys due before `now`: without a ledger, an older file's past reminders
    are taken as already fired."""
    return {
        alert.key
        for event in events
        for alert in alerts_for_event(event, send_at)
        if alert.due_utc <= now
    }
