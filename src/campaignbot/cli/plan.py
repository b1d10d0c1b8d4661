"""`campaignbot plan`: the upcoming alerts in due order."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import click
from rich.table import Table

from campaignbot.campaign.model import Campaign
from campaignbot.campaign.planning import PlannedAlert, plan_alerts
from campaignbot.cli.common import (
    Context,
    cli,
    handle_errors,
    missing_database,
    open_store,
    parse_time,
    pass_context,
    run_async,
    table_console,
)


def audience_sizes(ctx: Context, campaign: Campaign) -> dict[str, int] | None:
    """Matching active subscribers per event id; None without a database (CI, a new
    project before `run`), where the audience is unknown and no database is created."""
    from campaignbot.subscribers.store import SubscriberStore

    if missing_database(ctx) is not None:
        return None

    async def count() -> dict[str, int]:
        async with open_store(ctx) as db:
            store = SubscriberStore(db)
            return {
                event.id: await store.count_audience(event.audience) for event in campaign.events
            }

    return run_async(count())


@cli.command()
@click.option("--from", "since", metavar="T", help="Start (ISO 8601; default now).")
@click.option("--until", metavar="T", help="End (ISO 8601; default: no end).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.option(
    "--changes",
    is_flag=True,
    help="Show what saving the campaign file will do: reminders added, moved, removed, "
    "stale, and the change notices sent.",
)
@click.option(
    "--against",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="OLD.toml",
    help="With --changes: compare with this file instead of the database's record.",
)
@pass_context
@handle_errors
def plan(
    ctx: Context,
    since: str | None,
    until: str | None,
    as_json: bool,
    changes: bool,
    against: Path | None,
) -> None:
    """Show upcoming alerts: due time (UTC and event local), event, reminder, audience.

    Without a database the audience shows as unknown. With --changes: what saving the
    campaign file will do compared with what the database last recorded (or OLD.toml).
    """
    if against is not None and not changes:
        raise click.UsageError("--against needs --changes")
    if changes:
        from campaignbot.cli.plan_changes import show_changes

        show_changes(ctx, ctx.campaign(), against, as_json=as_json)
        return
    start = parse_time(since, param="--from") if since else ctx.now()
    end = parse_time(until, param="--until") if until else None
    campaign = ctx.campaign()
    alerts = plan_alerts(campaign, since=start, until=end)
    sizes = audience_sizes(ctx, campaign)
    if as_json:
        click.echo(json.dumps([_as_json(a, sizes) for a in alerts], indent=2))
        return
    _print_table(alerts, sizes, upcoming=start >= ctx.now() - timedelta(minutes=1))


def _audience(sizes: dict[str, int] | None, event_id: str) -> int | None:
    return None if sizes is None else sizes.get(event_id, 0)


def _as_json(alert: PlannedAlert, sizes: dict[str, int] | None) -> dict[str, object]:
    return {
        "event": alert.event_id,
        "reminder": alert.reminder,
        "due_utc": alert.due_utc.isoformat(),
        "due_local": alert.due_local.isoformat(),
        "audience": _audience(sizes, alert.event_id),
    }


def _print_table(
    alerts: list[PlannedAlert], sizes: dict[str, int] | None, *, upcoming: bool
) -> None:
    console = table_console()
    if not alerts:
        console.print("No alerts due in that range.")
        return
    # a --from in the past lists alerts that are not "upcoming" any more
    what = "upcoming alert" if upcoming else "alert"
    table = Table(title=f"{len(alerts)} {what}{'' if len(alerts) == 1 else 's'}")
    table.add_column("due (UTC)", no_wrap=True)
    table.add_column("due (event local)", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("reminder", justify="right", min_width=8)
    table.add_column("audience", justify="right", min_width=8)
    for alert in alerts:
        table.add_row(
            f"{alert.due_utc:%Y-%m-%d %H:%M}",
            f"{alert.due_local:%Y-%m-%d %H:%M %Z}",
            alert.event_id,
            alert.reminder,
            "?" if sizes is None else str(sizes.get(alert.event_id, 0)),
        )
    console.print(table)
    if sizes is None:
        console.print("audience ?: unknown, there is no database here yet")
