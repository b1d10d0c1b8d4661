"""Pure firing decisions: what a wake-up does with each due alert, and when a delivery is stale.

Every wake-up of the service (an APScheduler date job, the 30 s safety tick, start-up,
a reload) asks `due_actions` the same question with the same inputs: the plan, the
alert keys the ledger already holds, and the time. The answer is a list of `Fire` and
`Skip`; the service only carries it out. Time is an argument, so these rules are
tested as a table (tests/unit/test_firing.py).

The promises kept here (SPEC "Delivery guarantees"):
- an alert that would go out after its event has started is skipped (`stale`), on
  every path: catch-up, the reconcile tick, a late wake-up;
- the '0' reminder is due at the start itself: it may fire within ON_TIME of it (a
  wake-up is never exact) and finish its first attempts within `stale_after`;
- after downtime only the latest missed reminder of each event goes out, and only
  within `catch_up`; the earlier ones are skipped (`superseded`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from campaignbot.campaign.model import parse_offset
from campaignbot.campaign.planning import LATE_GRACE, PlannedAlert

#: How late after its due time a wake-up may still fire the '0' reminder: timers,
#: a busy loop and the database take a moment. Well below the 30 s reconcile tick, so
#: a '0' reminder found only by the tick after a missed wake-up is stale, as is one
#: found at start-up after downtime across the event's start.
ON_TIME = timedelta(seconds=15)


class SkipReason(StrEnum):
    """Why an alert or a delivery was recorded as skipped instead of sent."""

    STALE = "stale"  # its event has started
    MISSED = "missed"  # due longer ago than catch_up
    SUPERSEDED = "superseded"  # a later reminder of the same event is also due


@dataclass(frozen=True)
class Fire:
    """Write this alert's deliveries now."""

    alert: PlannedAlert


@dataclass(frozen=True)
class Skip:
    """Record this alert as skipped, with a reason `status` shows."""

    alert: PlannedAlert
    reason: SkipReason
    detail: str


Action = Fire | Skip


def fire_window_end(alert: PlannedAlert, start: datetime) -> datetime:
    """The instant after which `alert` may no longer fire: its event's start.

    The '0' reminder is due at the start, so it gets ON_TIME after it.
    """
    return max(start, alert.due_utc + ON_TIME)


def due_actions(
    plan: Iterable[PlannedAlert],
    starts: Mapping[str, datetime],
    fired_keys: Collection[str],
    *,
    now: datetime,
    catch_up: timedelta,
) -> list[Action]:
    """What to do with every alert that is due at `now` and not yet in the ledger.

    `starts` maps each event id to its start (the '0' reminder's instant; `send_at` on
    an all-day event's date). `fired_keys` are the keys already fired or skipped.
    """
    due = [a for a in plan if a.due_utc <= now]
    latest: dict[str, PlannedAlert] = {}
    for alert in due:
        current = latest.get(alert.event_id)
        if current is None or alert.due_utc > current.due_utc:
            latest[alert.event_id] = alert
    actions: list[Action] = []
    for alert in sorted(due):
        if alert.key in fired_keys:
            continue
        start = starts[alert.event_id]
        if now >= fire_window_end(alert, start):
            actions.append(Skip(alert, SkipReason.STALE, "its event has started"))
        elif now - alert.due_utc > max(catch_up, LATE_GRACE):
            actions.append(Skip(alert, SkipReason.MISSED, "missed by more than catch_up"))
        elif latest[alert.event_id] != alert:
            later = latest[alert.event_id].reminder
            actions.append(
                Skip(alert, SkipReason.SUPERSEDED, f"the later reminder {later} is due too")
            )
        else:
            actions.append(Fire(alert))
    return actions


def is_stale(
    reminder: str,
    start: datetime,
    *,
    now: datetime,
    first_attempt: bool,
    stale_after: timedelta,
) -> bool:
    """Whether a delivery of `reminder` must not go out any more at `now`.

    Before the start nothing is stale. After it only a first attempt of the '0'
    reminder may still go out, within `stale_after`: no retry, no `uncertain` re-send.
    """
    if now < start:
        return False
    return not (reminder == "0" and first_attempt and now < start + stale_after)


_UNIT = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}


def lead_label(reminder: str, start: datetime, *, now: datetime) -> str:
    """The reminder label whose wording fits the real lead from `now` to `start`.

    The reminder's own label while the real lead still rounds to it in its unit (a
    '1d' sent 22 hours before is still "tomorrow"); otherwise the real lead in the
    largest unit it reaches (a '1d' delayed by retries until 3 hours before is '3h':
    "in 3 hours"). After the start it is '0'.
    """
    offset = parse_offset(reminder)
    lead = start - now
    if not offset.amount or lead <= timedelta(0):
        return "0"
    if round(lead / _UNIT[offset.unit]) == offset.amount:
        return reminder
    for unit in ("d", "h", "m"):
        if lead >= _UNIT[unit]:
            return f"{round(lead / _UNIT[unit])}{unit}"
    return "0"


__all__ = [
    "LATE_GRACE",
    "ON_TIME",
    "Action",
    "Fire",
    "Skip",
    "SkipReason",
    "due_actions",
    "fire_window_end",
    "is_stale",
    "lead_label",
]
