"""Pure preview of what saving the campaign file on disk would change (the Campaign page).

Compares the running snapshot's plan with the file on disk: reminders added, moved
and removed (only those still ahead), and the events whose date, time or status
changed or that were removed, for which subscribers already alerted get a notice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from campaignbot.campaign.model import Event, Status
from campaignbot.campaign.planning import PlannedAlert


@dataclass(frozen=True)
class Change:
    change: str  # added | moved | removed | notice
    event: str
    reminder: str | None
    due_utc: datetime | None
    new_due_utc: datetime | None
    notice: str | None = None  # rescheduled | postponed | cancelled | removed


def _when(event: Event) -> str:
    return f"{event.when.isoformat()} {event.timezone.key}"


def preview_changes(
    old_plan: Iterable[PlannedAlert],
    new_plan: Iterable[PlannedAlert],
    old_events: Iterable[Event],
    new_events: Iterable[Event],
    *,
    now: datetime,
) -> list[Change]:
    """What the file on disk would change, in due order, notices last."""
    old = {a.key: a for a in old_plan if a.due_utc > now}
    new = {a.key: a for a in new_plan if a.due_utc > now}
    changes: list[Change] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None and after is not None:
            changes.append(Change("added", after.event_id, after.reminder, None, after.due_utc))
        elif after is None and before is not None:
            changes.append(
                Change("removed", before.event_id, before.reminder, before.due_utc, None)
            )
        elif before is not None and after is not None and before.due_utc != after.due_utc:
            changes.append(
                Change("moved", after.event_id, after.reminder, before.due_utc, after.due_utc)
            )
    changes.sort(key=lambda c: (c.new_due_utc or c.due_utc or now, c.event, c.reminder or ""))
    new_by_id = {e.id: e for e in new_events}
    # events already past send no notice worth previewing
    ahead = {a.event_id for a in (*old.values(), *new.values())}
    for event in old_events:
        if event.id not in ahead:
            continue
        current = new_by_id.get(event.id)
        if current is None:
            notice = "removed"
        elif current.status is not event.status and current.status is not Status.SCHEDULED:
            notice = current.status.value
        elif _when(current) != _when(event) or current.status is not event.status:
            notice = "rescheduled"
        else:
            continue
        changes.append(Change("notice", event.id, None, None, None, notice))
    return changes
