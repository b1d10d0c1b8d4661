"""`campaignbot send`: fire one alert now through the ledger, or test-send to one address."""

from __future__ import annotations

import os
import socket
from collections import Counter

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from campaignbot.campaign.model import Campaign, Event, Status
from campaignbot.campaign.planning import PlannedAlert, alerts_for_event, event_deadline
from campaignbot.cli.common import (
    Context,
    cli,
    err_console,
    handle_errors,
    open_store,
    pass_context,
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
from campaignbot.subscribers.store import audience_clause

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


@cli.command()
@click.argument("event_id", metavar="EVENT")
@click.option(
    "--reminder",
    "-r",
    default="0",
    show_default=True,
    metavar="R",
    help="Reminder offset of the event, e.g. 1d.",
)
@click.option(
    "--to",
    metavar="EMAIL",
    help="Send one test message to this address; the ledger is not touched.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the audience and a sample message; send and record nothing.",
)
@pass_context
@handle_errors
def send(ctx: Context, event_id: str, reminder: str, to: str | None, dry_run: bool) -> None:
    """Send an alert now to the event's whole audience (or one test address).

    Goes through the ledger like the scheduler (key EVENT:REMINDER), so an alert is
    never sent twice: running it again only resumes what is still pending.
    """
    snapshot = load_snapshot(ctx.settings)
    campaign, renderer = snapshot.campaign, snapshot.renderer
    event = _event(campaign, event_id)
    if to is not None:
        try:
            address = normalize_email(to)
        except ValueError as err:
            raise InvalidInputError(f"--to: {err}") from None
        _check_reminder(event, reminder)
        run_async(_send_test(ctx, campaign, renderer, event, reminder, address, dry_run=dry_run))
        return
    alert = _planned(event, reminder, campaign)
    if ctx.now() >= event_deadline(event, campaign.campaign.send_at):
        raise InvalidInputError(f"event {event.id!r} has already happened: no alerts go out")
    if dry_run:
        run_async(_dry_run(ctx, renderer, event, alert))
        return
    code = run_async(_send_alert(ctx, renderer, campaign, event, alert))
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
        click.echo(f"Would send to {address}: {message['Subject']}")
        return
    transport = make_transport(ctx.settings.smtp, ctx.settings.maildir)
    try:
        reply = await transport.send(
            message, sender=campaign.campaign.sender_address.addr_spec, recipient=address
        )
    finally:
        await transport.aclose()
    click.echo(f"Sent test message to {address} via {transport.description}: {reply}")


async def _dry_run(ctx: Context, renderer: Renderer, event: Event, alert: PlannedAlert) -> None:
    audience = audience_clause(event.audience)
    async with open_store(ctx) as db, db.engine.connect() as conn:
        count = (
            await conn.execute(select(func.count()).select_from(subscribers).where(audience))
        ).scalar_one()
        first = (
            await conn.execute(
                select(subscribers).where(audience).order_by(subscribers.c.id).limit(1)
            )
        ).first()
    click.echo(f"Would send {alert.key} to {count} subscriber(s); nothing sent or recorded.")
    if first is None:
        return
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
    ctx: Context, renderer: Renderer, campaign: Campaign, event: Event, alert: PlannedAlert
) -> int:
    settings = ctx.settings
    transport = make_transport(settings.smtp, settings.maildir)
    try:
        await _check(transport)
        async with open_store(ctx) as db:
            ledger = Ledger(db, owner=f"{socket.gethostname()}:{os.getpid()}")
            try:
                return await _fire_and_send(
                    ctx, ledger, transport, renderer, campaign, event, alert
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
