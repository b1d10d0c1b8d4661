"""`campaignbot send`: fire one alert now through the ledger, or test-send to one address."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections import Counter
from datetime import datetime

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from campaignbot.campaign.model import Campaign, Event, Status
from campaignbot.campaign.planning import PlannedAlert, alerts_for_event, event_deadline
from campaignbot.cli.common import (
    EXIT_INVALID,
    Context,
    cli,
    err_console,
    handle_errors,
    open_store,
    pass_context,
    require_database,
    run_async,
)
from campaignbot.delivery.ledger import Claim, Ledger, Outcome
from campaignbot.delivery.sender import Sender
from campaignbot.delivery.transport import Transport, make_transport
from campaignbot.email.render import Recipient, Renderer
from campaignbot.email.snapshot import load_snapshot
from campaignbot.errors import DeliveryError, InvalidInputError
from campaignbot.storage.states import FINAL_STATUSES, OPEN_STATUSES, DeliveryStatus
from campaignbot.storage.tables import subscribers
from campaignbot.subscribers.model import normalize_email
from campaignbot.subscribers.store import SubscriberStore, audience_clause

EXIT_FAILURE = 1


def _event(campaign: Campaign, event_id: str) -> Event:
    return campaign.event(event_id)  # UnknownEventError: bad input, exit 2


def _check_reminder(event: Event, reminder: str) -> None:
    labels = [offset.label for offset in event.reminders]
    if reminder not in labels:
        known = ", ".join(labels) or "none"
        raise InvalidInputError(
            f"unknown reminder {reminder!r} for event {event.id!r} (known: {known})"
        )


def _planned(event: Event, reminder: str, campaign: Campaign) -> PlannedAlert:
    _check_reminder(event, reminder)
    if event.status is not Status.SCHEDULED:
        raise InvalidInputError(f"event {event.id!r} is {event.status.value}: no alerts go out")
    planned = alerts_for_event(event, campaign.campaign.send_at)
    return next(a for a in planned if a.reminder == reminder)


def _sample(to: str, campaign: Campaign) -> Recipient:
    info = campaign.campaign
    return Recipient(0, to, "", info.default_locale, info.timezone.key)


def _first_reminder(event: Event) -> str:
    # the same default as `preview`, so a test send shows what was previewed
    return event.reminders[0].label if event.reminders else "0"


def _when(moment: datetime, now: datetime) -> str:
    left = moment - now
    days, hours = left.days, left.seconds // 3600
    ahead = f"in {days} d {hours} h" if days else f"in {hours} h {left.seconds // 60 % 60} min"
    return f"{moment:%Y-%m-%d %H:%M} UTC ({ahead})"


@cli.command()
@click.argument("event_id", metavar="EVENT")
@click.option(
    "--reminder",
    "-r",
    default=None,
    metavar="R",
    help="Reminder offset of the event, e.g. 1d (default: the first, as in preview).",
)
@click.option(
    "--to",
    metavar="EMAIL",
    help="Send one test message to this address; the ledger is not touched.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the audience (first rows and the count) and a sample; send nothing.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before sending to an audience.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (or audience) as JSON.")
@pass_context
@handle_errors
def send(
    ctx: Context,
    event_id: str,
    reminder: str | None,
    to: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Send an alert now to the event's whole audience (or one test address).

    Goes through the ledger like the scheduler (key EVENT:REMINDER), so an alert is
    never sent twice: running it again only resumes what is still pending. Sending to
    an audience asks first; without a terminal it needs --yes.
    """
    snapshot = load_snapshot(ctx.settings)
    campaign, renderer = snapshot.campaign, snapshot.renderer
    event = _event(campaign, event_id)
    reminder = reminder or _first_reminder(event)
    if to is not None:
        try:
            address = normalize_email(to)
        except ValueError as err:
            raise InvalidInputError(f"--to: {err}") from None
        _check_reminder(event, reminder)
        run_async(_send_test(ctx, campaign, renderer, event, reminder, address, dry_run=dry_run))
        return
    alert = _planned(event, reminder, campaign)
    now = ctx.now()
    if now >= event_deadline(event, campaign.campaign.send_at):
        raise InvalidInputError(f"event {event.id!r} has already happened: no alerts go out")
    require_database(ctx)
    if dry_run:
        run_async(_dry_run(ctx, renderer, event, alert, as_json=as_json))
        return
    early = alert.due_utc > now
    if early:
        err_console.print(
            f"warning: {alert.key} is due {_when(alert.due_utc, now)}; sent now, its "
            f"wording ('{reminder}' before the event) arrives early, and it will not go "
            "out again at its time",
            markup=False,
            highlight=False,
        )
    count = run_async(_audience_count(ctx, event))
    title = event.title_for(campaign.campaign.default_locale, campaign.campaign.default_locale)
    question = f'Send "{title}" ({reminder}) to {count:,} subscribers now?'
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInputError(
                f"{alert.key}: would send to {count:,} subscribers; no terminal to ask, "
                "nothing sent",
                hint="add --yes to send without asking, or --dry-run to see the audience",
            )
        if not click.confirm(question, default=False, err=True):
            err_console.print("Nothing sent.")
            raise click.exceptions.Exit(EXIT_INVALID)
    code = run_async(_send_alert(ctx, renderer, campaign, event, alert, as_json=as_json))
    if code:
        click.get_current_context().exit(code)


async def _send_test(
    ctx: Context,
    campaign: Campaign,
    renderer: Renderer,
    event: Event,
    reminder: str,
    address: str,
    *,
    dry_run: bool,
) -> None:
    message = renderer.render_alert(event, reminder, _sample(address, campaign), now=ctx.now())
    if dry_run:
        click.echo(f"Would send {event.id}:{reminder} to {address}: {message['Subject']}")
        return
    transport = make_transport(ctx.settings.smtp, ctx.settings.maildir)
    try:
        reply = await transport.send(
            message, sender=campaign.campaign.sender_address.addr_spec, recipient=address
        )
    finally:
        await transport.aclose()
    click.echo(
        f"Sent test message {event.id}:{reminder} to {address} via {transport.description}: {reply}"
    )


async def _audience_count(ctx: Context, event: Event) -> int:
    async with open_store(ctx) as db:
        return await SubscriberStore(db).count_audience(event.audience)


#: rows of the audience a dry run prints before "... and N more"
DRY_RUN_ROWS = 10


async def _dry_run(
    ctx: Context, renderer: Renderer, event: Event, alert: PlannedAlert, *, as_json: bool
) -> None:
    audience = audience_clause(event.audience)
    query = select(subscribers).where(audience).order_by(subscribers.c.id)
    async with open_store(ctx) as db, db.engine.connect() as conn:
        count = (
            await conn.execute(select(func.count()).select_from(subscribers).where(audience))
        ).scalar_one()
        rows = (await conn.execute(query if as_json else query.limit(DRY_RUN_ROWS))).all()
    if as_json:
        listing = [
            {"email": r.email, "name": r.name, "locale": r.locale, "timezone": r.timezone}
            for r in rows
        ]
        click.echo(json.dumps({"alert": alert.key, "audience": count, "subscribers": listing}))
        return
    click.echo(f"Would send {alert.key} to {count} subscriber(s); nothing sent or recorded.")
    for r in rows:
        click.echo(f"  {r.email}  {r.locale}  {r.timezone}")
    if count > len(rows):
        click.echo(f"  ... and {count - len(rows)} more (--json lists all)")
    if not rows:
        return
    first = rows[0]
    to = Recipient(first.id, first.email, first.name, first.locale, first.timezone)
    message = renderer.render_alert(event, alert.reminder, to, now=ctx.now())
    click.echo(f"Sample: To: {message['To']}")
    click.echo(f"        Subject: {message['Subject']}")


async def _check(transport: Transport) -> None:
    try:
        await transport.check()
    except DeliveryError as err:
        raise DeliveryError(
            f"{transport.description}: unreachable, nothing sent: {err}",
        ) from err


async def _send_alert(
    ctx: Context,
    renderer: Renderer,
    campaign: Campaign,
    event: Event,
    alert: PlannedAlert,
    *,
    as_json: bool,
) -> int:
    settings = ctx.settings
    transport = make_transport(settings.smtp, settings.maildir)
    try:
        await _check(transport)
        async with open_store(ctx) as db:
            ledger = Ledger(db, owner=f"{socket.gethostname()}:{os.getpid()}")
            try:
                return await _fire_and_send(
                    ctx, ledger, transport, renderer, campaign, event, alert, as_json=as_json
                )
            finally:
                # Ctrl-C: what this process claimed but did not send goes back at once
                await ledger.release(now=ctx.now())
    finally:
        await transport.aclose()


async def _fire_and_send(
    ctx: Context,
    ledger: Ledger,
    transport: Transport,
    renderer: Renderer,
    campaign: Campaign,
    event: Event,
    alert: PlannedAlert,
    *,
    as_json: bool,
) -> int:
    result = await ledger.fire_alert(alert, audience_clause(event.audience), now=ctx.now())
    if not result.created:
        err_console.print(f"{alert.key} was fired before; sending what is still due.")
    before = await ledger.alert_counts(result.alert_id)
    done_before = sum(n for s, n in before.items() if s in FINAL_STATUSES)
    sender = Sender(
        ledger, transport, lambda: (renderer, campaign), clock=ctx.now, settings=ctx.settings
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(alert.key, total=result.deliveries, completed=done_before)

        def advance(claim: Claim, outcome: Outcome) -> None:
            if claim.alert_id == result.alert_id:
                progress.advance(task)

        await sender.run_until_idle(on_outcome=advance)
    counts = Counter(await ledger.alert_counts(result.alert_id))
    retry = sum(counts[s] for s in OPEN_STATUSES)
    if as_json:
        summary = {"alert": alert.key, "sent": counts["sent"], "failed": counts["failed"]}
        click.echo(json.dumps(summary | {"skipped": counts["skipped"], "retry": retry}))
    else:
        click.echo(
            f"{alert.key}: {counts['sent']} sent, {counts['failed']} failed, "
            f"{counts['skipped']} skipped, {retry} retry"
        )
    if retry:
        err_console.print(
            "hint: deliveries marked retry go out with backoff while `campaignbot run` "
            "is running (or run this command again later)"
        )
    if result.deliveries and counts[DeliveryStatus.SENT] == 0 and retry == result.deliveries:
        return EXIT_FAILURE  # the transport took nothing
    return 0
