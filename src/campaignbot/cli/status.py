"""`campaignbot status`: what the ledger says about every alert, and what comes next."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click
from rich.console import Console
from rich.table import Table

from campaignbot.campaign.model import Campaign
from campaignbot.campaign.planning import PlannedAlert, plan_alerts
from campaignbot.cli.common import (
    Context,
    cli,
    err_console,
    handle_errors,
    open_store,
    pass_context,
    require_database,
    run_async,
    table_console,
)
from campaignbot.delivery.ledger import AlertStatus, FailedDelivery, Ledger, StatusSummary
from campaignbot.errors import InvalidInputError

#: upcoming alerts shown under the ledger's table (all of them for `status EVENT`)
UPCOMING_ROWS = 10


def _reminder(alert: AlertStatus) -> str:
    # alerts are keyed "event:reminder", notices "event:notice:sequence"
    return alert.key.split(":", 1)[1] if ":" in alert.key else alert.reminder


def _as_json(alert: AlertStatus) -> dict[str, object]:
    return {
        "event": alert.event,
        "reminder": _reminder(alert),
        "due": alert.due.isoformat(),
        "sent": alert.sent,
        "pending": alert.pending,
        "retry": alert.retry,
        "failed": alert.failed,
        "uncertain": alert.uncertain,
        "skipped": alert.skipped,
        "bounced": alert.bounced,
        "complained": alert.complained,
        "stale": alert.stale,  # of the skipped deliveries: their event had started
        "state": alert.status,
        "skip_reason": alert.skip_reason,  # a skipped alert: stale, missed or superseded
    }


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _print_ledger(console: Console, summary: StatusSummary) -> None:
    if not summary.alerts:
        console.print("No alerts fired yet.")
        return
    table = Table(title=f"{len(summary.alerts)} alerts fired or skipped")
    table.add_column("event", no_wrap=True)
    table.add_column("reminder", no_wrap=True)
    table.add_column("due (UTC)", no_wrap=True)
    columns = ("sent", "pending", "retry", "failed", "uncertain", "skipped", "stale", "bounced")
    for name in (*columns, "compl."):
        table.add_column(name, justify="right")
    table.add_column("state", no_wrap=True)
    for alert in summary.alerts:
        counts = [alert.sent, alert.pending, alert.retry, alert.failed, alert.uncertain]
        counts += [alert.skipped, alert.stale, alert.bounced, alert.complained]
        cells = [str(n) if n else "·" for n in counts]
        # the words go in their own column: numeric columns hold numbers only (a whole
        # alert skipped: stale after its event started, missed beyond catch_up,
        # superseded when a later reminder went out)
        state = alert.status
        if alert.status == "skipped":
            state = f"{alert.skip_reason or 'missed'} (too late)"
        due = f"{alert.due:%Y-%m-%d %H:%M}"
        table.add_row(alert.event, _reminder(alert), due, *cells, state)
    console.print(table)
    if summary.oldest_pending_age_s is None:
        console.print("Nothing waiting to be sent.")
    else:
        console.print(f"Oldest delivery waiting: {_age(summary.oldest_pending_age_s)}.")


def _print_upcoming(
    console: Console, upcoming: list[PlannedAlert], sizes: dict[str, int], *, rows: int | None
) -> None:
    if not upcoming:
        console.print("No alerts coming up.")
        return
    shown = upcoming if rows is None else upcoming[:rows]
    more = len(upcoming) - len(shown)
    table = Table(title=f"Next {len(shown)} of {len(upcoming)} upcoming alerts")
    table.add_column("due (UTC)", no_wrap=True)
    table.add_column("due (event local)", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("reminder", justify="right")
    table.add_column("audience", justify="right")
    for alert in shown:
        table.add_row(
            f"{alert.due_utc:%Y-%m-%d %H:%M}",
            f"{alert.due_local:%Y-%m-%d %H:%M %Z}",
            alert.event_id,
            alert.reminder,
            f"{sizes.get(alert.event_id, 0):,}",
        )
    console.print(table)
    if more:
        console.print(f"... and {more} more (`campaignbot plan` lists them all)")


def _print_failed(console: Console, failed: list[FailedDelivery]) -> None:
    if not failed:
        console.print("No failed deliveries.")
        return
    table = Table(title=f"{len(failed)} failed deliveries")
    table.add_column("alert", no_wrap=True)
    table.add_column("address")
    table.add_column("code", justify="right")
    table.add_column("reason")
    table.add_column("when (UTC)", no_wrap=True)
    for f in failed:
        code = str(f.code) if f.code is not None else "·"
        table.add_row(f.key, f.email, code, f.reason or "", f"{f.at:%Y-%m-%d %H:%M}")
    console.print(table, markup=False, highlight=False)


@dataclass(frozen=True)
class _Report:
    summary: StatusSummary
    upcoming: list[PlannedAlert]
    sizes: dict[str, int]
    failed: list[FailedDelivery]


def _campaign(ctx: Context) -> Campaign | None:
    try:
        return ctx.campaign()
    except InvalidInputError as err:
        # the ledger is still worth showing while the file has a problem
        err_console.print(f"warning: upcoming alerts unknown: {err}", markup=False)
        return None


@cli.command()
@click.argument("event_id", metavar="[EVENT]", required=False)
@click.option("--failed", is_flag=True, help="List failed deliveries: address, code, reason.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of tables.")
@pass_context
@handle_errors
def status(ctx: Context, event_id: str | None, failed: bool, as_json: bool) -> None:
    """Per alert: due, sent, pending, retry, failed, uncertain, skipped, bounced,
    complained; then the upcoming alerts with their audience. EVENT: only that event,
    every reminder."""
    require_database(ctx)
    campaign = _campaign(ctx)
    now = ctx.now()
    events = list(campaign.events) if campaign else []
    if event_id is not None:
        events = [e for e in events if e.id == event_id]
    upcoming = plan_alerts(campaign, since=now, events=events) if campaign else []

    async def read() -> _Report:
        from campaignbot.subscribers.store import SubscriberStore

        async with open_store(ctx) as db:
            ledger = Ledger(db, owner="status")
            summary = await ledger.status_summary(now=now)
            store = SubscriberStore(db)
            sizes = {e.id: await store.count_audience(e.audience) for e in events}
            bad = await ledger.failed_deliveries(event_id=event_id) if failed else []
        return _Report(summary, upcoming, sizes, bad)

    report = run_async(read())
    summary = report.summary
    if event_id is not None:
        mine = [a for a in summary.alerts if a.event == event_id]
        if not mine and not events:
            known = ", ".join(e.id for e in campaign.events) if campaign else "none"
            raise InvalidInputError(f"unknown event {event_id!r} (known: {known})")
        summary = StatusSummary(mine, summary.oldest_pending_age_s)
    if failed:
        if as_json:
            click.echo(json.dumps([_failed_json(f) for f in report.failed], indent=2))
        else:
            _print_failed(table_console(), report.failed)
        return
    if as_json:
        click.echo(json.dumps([_as_json(a) for a in summary.alerts], indent=2))
        return
    console = table_console()
    _print_ledger(console, summary)
    if campaign is not None:
        rows = None if event_id is not None else UPCOMING_ROWS
        _print_upcoming(console, report.upcoming, report.sizes, rows=rows)


def _failed_json(f: FailedDelivery) -> dict[str, object]:
    return {
        "alert": f.key,
        "event": f.event,
        "email": f.email,
        "code": f.code,
        "reason": f.reason,
        "at": f.at.isoformat(),
    }
