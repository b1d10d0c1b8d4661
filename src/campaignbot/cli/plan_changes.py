"""`campaignbot plan --changes`: the thin I/O adapter around `campaign.changes`.

It gathers the old side (the schedule the database last recorded, or an older file),
the alerts already fired and the audience sizes, then prints what the pure
`plan_changes` computed. Without a database audiences are unknown (null / "?").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from campaignbot.campaign.changes import (
    ChangeKind,
    PlanChange,
    alerted_events,
    overdue_keys,
    plan_changes,
)
from campaignbot.campaign.model import Campaign, Event, load_campaign
from campaignbot.campaign.planning import alerts_for_event
from campaignbot.cli.common import Context, missing_database, open_store, run_async


@dataclass(frozen=True)
class _Baseline:
    events: list[Event]
    fired: set[str]
    audience: dict[str, int] | None
    source: str


async def _from_database(ctx: Context, campaign: Campaign) -> _Baseline:
    from campaignbot.delivery.event_state import EventState
    from campaignbot.subscribers.store import SubscriberStore

    send_at = campaign.campaign.send_at
    async with open_store(ctx) as db:
        state = EventState(db)
        recorded = await state.recorded()
        everything = [*recorded.values(), *campaign.events]
        keys = {a.key for e in everything for a in alerts_for_event(e, send_at)}
        fired = await state.fired_keys(keys)
        store = SubscriberStore(db)
        audience = {e.id: await store.count_audience(e.audience) for e in everything}
    return _Baseline(list(recorded.values()), fired, audience, "the database")


def _baseline(ctx: Context, campaign: Campaign, against: Path | None) -> _Baseline:
    now = ctx.now()
    if against is not None:
        old = load_campaign(against)
        send_at = campaign.campaign.send_at
        audience = None
        if missing_database(ctx) is None:
            audience = run_async(_from_database(ctx, campaign)).audience
        # no ledger to ask: the older file's overdue reminders count as fired
        fired = overdue_keys(old.events, send_at, now=now)
        return _Baseline(list(old.events), fired, audience, str(against))
    if missing_database(ctx) is not None:
        return _Baseline([], set(), None, "an empty schedule (no database here)")
    return run_async(_from_database(ctx, campaign))


def _as_json(change: PlanChange, audience: dict[str, int] | None) -> dict[str, object]:
    return {
        "change": change.change.value,
        "event": change.event_id,
        "reminder": change.reminder,
        "due_utc": change.due_utc.isoformat() if change.due_utc else None,
        "new_due_utc": change.new_due_utc.isoformat() if change.new_due_utc else None,
        "notice": change.notice.value if change.notice else None,
        "audience": None if audience is None else audience.get(change.event_id, 0),
    }


def _local(moment: datetime | None, event: Event | None) -> str:
    if moment is None:
        return "—"
    if event is None:
        return f"{moment:%d %b %H:%M} UTC"
    return moment.astimezone(event.timezone).strftime("%d %b %Y %H:%M %Z")


def _line(change: PlanChange, events: dict[str, Event], audience: dict[str, int] | None) -> str:
    event = events.get(change.event_id)
    count = "?" if audience is None else f"{audience.get(change.event_id, 0):,}"
    old, new = _local(change.due_utc, event), _local(change.new_due_utc, event)
    what = f"'{change.event_id}' {change.reminder}"
    if change.change is ChangeKind.NOTICE:
        assert change.notice is not None
        moved = f" {old} → {new}," if change.new_due_utc else ""
        return f"{change.notice.value}: '{change.event_id}'{moved} notice to {count} subscribers"
    if change.change is ChangeKind.ADDED:
        return f"added: {what} due {new}, to {count} subscribers"
    if change.change is ChangeKind.MOVED:
        return f"moved: {what} {old} → {new}"
    if change.change is ChangeKind.REMOVED:
        return f"removed: {what} (was due {old})"
    return f"stale: {what} due {new} is past: it will be skipped"


def show_changes(ctx: Context, campaign: Campaign, against: Path | None, *, as_json: bool) -> None:
    """Print what saving the campaign file will do, compared with the baseline."""
    base = _baseline(ctx, campaign, against)
    send_at = campaign.campaign.send_at
    changes = plan_changes(
        base.events,
        campaign.events,
        send_at=send_at,
        now=ctx.now(),
        catch_up=campaign.campaign.catch_up_duration,
        fired=base.fired,
        alerted=alerted_events(base.events, send_at, base.fired),
    )
    if as_json:
        click.echo(json.dumps([_as_json(c, base.audience) for c in changes], indent=2))
        return
    events = {e.id: e for e in base.events} | {e.id: e for e in campaign.events}
    click.echo(f"Compared with {base.source}: {len(changes) or 'no'} change(s).")
    for change in changes:
        click.echo(_line(change, events, base.audience))
