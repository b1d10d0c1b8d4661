"""`campaignbot preview`: render one email (alert, change notice or opt-in) to stdout."""

from __future__ import annotations

from email.message import EmailMessage, MIMEPart

import click

from campaignbot.campaign.model import Campaign, Event, parse_offset
from campaignbot.campaign.planning import reminder_due
from campaignbot.cli.common import Context, cli, handle_errors, pass_context
from campaignbot.email.render import CHANGES, Recipient
from campaignbot.email.snapshot import build_snapshot
from campaignbot.email.templates import template_locales
from campaignbot.errors import InvalidInputError


def _event(campaign: Campaign, event_id: str) -> Event:
    return campaign.event(event_id)  # UnknownEventError: bad input, exit 2


def _reminder(event: Event, reminder: str | None) -> str:
    labels = [offset.label for offset in event.reminders]
    if reminder is None:
        return labels[0] if labels else "0"
    if reminder not in labels:
        known = ", ".join(labels) or "none"
        raise InvalidInputError(
            f"unknown reminder {reminder!r} for event {event.id!r} (known: {known})"
        )
    return reminder


def _locale(ctx: Context, campaign: Campaign, locale: str | None) -> str:
    known = list(dict.fromkeys([*campaign.locales, *template_locales(ctx.settings.templates)]))
    if locale is None:
        return campaign.campaign.default_locale
    if locale not in known:
        raise InvalidInputError(f"unknown locale {locale!r} (known: {', '.join(known)})")
    return locale


def _as_text(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    text = body.get_content() if isinstance(body, MIMEPart) else ""
    headers = "".join(f"{name}: {msg[name]}\n" for name in ("Subject", "From", "To"))
    return f"{headers}\n{text}"


def _as_html(msg: EmailMessage) -> str:
    body = msg.get_body(("html",))
    return str(body.get_content()) if isinstance(body, MIMEPart) else ""


@cli.command()
@click.argument("event_id", metavar="[EVENT]", required=False)
@click.option("--reminder", "-r", metavar="R", help="Reminder offset, e.g. 1d (default: first).")
@click.option("--locale", "-l", metavar="L", help="Locale (default: the campaign's default).")
@click.option(
    "--kind",
    type=click.Choice(["alert", "notice", "confirm"]),
    default="alert",
    show_default=True,
    help="A reminder, a change notice about EVENT, or the sign-up confirmation (no EVENT).",
)
@click.option(
    "--change",
    type=click.Choice(CHANGES),
    default="rescheduled",
    show_default=True,
    help="What the notice announces (with --kind notice).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "html", "eml"]),
    default="text",
    show_default=True,
    help="Headers and plain text, the HTML part, or the whole message.",
)
@pass_context
@handle_errors
def preview(
    ctx: Context,
    event_id: str | None,
    reminder: str | None,
    locale: str | None,
    kind: str,
    change: str,
    fmt: str,
) -> None:
    """Render the email for EVENT as a sample subscriber would get it."""
    campaign = ctx.campaign()
    lang = _locale(ctx, campaign, locale)
    settings = ctx.settings
    renderer = build_snapshot(settings, campaign).renderer
    sample = Recipient(
        id=0,
        email="subscriber@example.org",
        name="Sample Subscriber",
        locale=lang,
        timezone=campaign.campaign.timezone.key,
    )
    now = ctx.now()
    if kind == "confirm":
        msg = renderer.render_confirm(sample, now=now)
    elif event_id is None:
        raise InvalidInputError(f"preview --kind {kind} needs an EVENT (see `campaignbot plan`)")
    elif kind == "notice":
        msg = renderer.render_notice(
            _event(campaign, event_id), change, sample, now=now, sequence=1
        )
    else:
        event = _event(campaign, event_id)
        label = _reminder(event, reminder)
        # as the subscriber reads it: rendered when the reminder is due ("In 3 days")
        due = reminder_due(event, parse_offset(label), campaign.campaign.send_at)
        msg = renderer.render_alert(event, label, sample, now=due)
    if fmt == "eml":
        click.echo(msg.as_bytes(), nl=False)
    elif fmt == "html":
        click.echo(_as_html(msg), nl=False)
    else:
        click.echo(_as_text(msg), nl=False)
