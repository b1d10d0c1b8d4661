"""`campaignbot bounces`: recent bounce and complaint reports and the action taken."""

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
from campaignbot.delivery.bounces.reader import ReadSummary, read_bounces_once
from campaignbot.delivery.bounces.recorder import ReportRow, recent_reports


def _as_json(row: ReportRow) -> dict[str, object]:
    return {
        "received": row.received_at.isoformat(),
        "source": row.source,
        "kind": row.kind,
        "email": row.email,
        "status": row.status_code,
        "smtp_code": row.smtp_code,
        "reason": row.diagnostic,
        "action": row.action,
        "delivery": row.delivery_id,
        "subscriber": row.subscriber_id,
    }


def _print_table(rows: list[ReportRow]) -> None:
    console = table_console()
    if not rows:
        console.print("No bounce or complaint reports yet.")
        return
    table = Table(title=f"{len(rows)} most recent reports")
    for name in ("received (UTC)", "source", "kind", "address", "code", "reason", "action"):
        table.add_column(name, overflow="fold")
    for row in rows:
        code = row.status_code or (str(row.smtp_code) if row.smtp_code else "·")
        table.add_row(
            f"{row.received_at:%Y-%m-%d %H:%M}",
            row.source,
            row.kind,
            row.email or "?",
            code,
            row.diagnostic[:80],
            row.action,
        )
    console.print(table)


@cli.command()
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 10000), help="Newest first."
)
@click.option("--all", "include_other", is_flag=True, help="Also list mail that was no bounce.")
@click.option(
    "--read", "read_now", is_flag=True, help="Read the bounce mailbox once first (as the service)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_context
@handle_errors
def bounces(ctx: Context, limit: int, include_other: bool, read_now: bool, as_json: bool) -> None:
    """Recent bounce and complaint reports: address, code, reason and the action taken."""

    async def work() -> tuple[ReadSummary | None, list[ReportRow]]:
        async with open_store(ctx) as db:
            summary = None
            if read_now:
                summary = await read_bounces_once(db, ctx.settings, clock=ctx.now)
            return summary, await recent_reports(db, limit=limit, include_other=include_other)

    summary, rows = run_async(work())
    if summary is not None and not as_json:
        actions = ", ".join(f"{n} {a}" for a, n in sorted(summary.actions.items())) or "nothing"
        click.echo(
            f"Read {summary.messages} messages from the bounce mailbox: {actions}.", err=True
        )
    if as_json:
        click.echo(json.dumps([_as_json(r) for r in rows], indent=2))
        return
    _print_table(rows)
