"""`campaignbot status`: what the ledger says about every alert fired or skipped."""

from __future__ import annotations

import json

import click
from rich.table import Table

from campaignbot.cli.common import (
    Context,
    cli,
    handle_errors,
    open_store,
    pass_context,
    run_async,
    table_console,
)
from campaignbot.delivery.ledger import AlertStatus, Ledger, StatusSummary


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


def _print_table(summary: StatusSummary) -> None:
    console = table_console()
    if not summary.alerts:
        console.print("No alerts fired yet.")
        return
    table = Table(title=f"{len(summary.alerts)} alerts")
    table.add_column("event", no_wrap=True)
    table.add_column("reminder", no_wrap=True)
    table.add_column("due (UTC)", no_wrap=True)
    for name in ("sent", "pending", "retry", "failed", "uncertain", "skipped"):
        table.add_column(name, justify="right")
    for alert in summary.alerts:
        counts = [alert.sent, alert.pending, alert.retry, alert.failed, alert.uncertain]
        cells = [str(n) if n else "·" for n in counts]
        skipped = str(alert.skipped) if alert.skipped else "·"
        if alert.stale:
            skipped += f" ({alert.stale} stale)"
        if alert.status == "skipped":
            # the whole alert: too late when the service came back (stale: after its
            # event started; missed: beyond catch_up; superseded: a later one went out)
            skipped = alert.skip_reason or "missed"
        table.add_row(alert.event, _reminder(alert), f"{alert.due:%Y-%m-%d %H:%M}", *cells, skipped)
    console.print(table)
    if summary.oldest_pending_age_s is None:
        console.print("Nothing waiting to be sent.")
    else:
        console.print(f"Oldest delivery waiting: {_age(summary.oldest_pending_age_s)}.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_context
@handle_errors
def status(ctx: Context, as_json: bool) -> None:
    """Per alert: due, sent, pending, retry, failed, uncertain, skipped."""

    async def read() -> StatusSummary:
        async with open_store(ctx) as db:
            return await Ledger(db, owner="status").status_summary(now=ctx.now())

    summary = run_async(read())
    if as_json:
        click.echo(json.dumps([_as_json(a) for a in summary.alerts], indent=2))
        return
    _print_table(summary)
