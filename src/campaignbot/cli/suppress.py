"""`campaignbot subscribers suppress|unsuppress`: a do-not-contact list that stays.

Unlike `remove` (erasure), a suppressed address keeps its record, so neither an
import nor a sign-up can add it again.
"""

from __future__ import annotations

import click

from campaignbot.cli.common import Context, handle_errors, open_store, pass_context, run_async
from campaignbot.cli.subscribers import campaign_defaults, subscribers
from campaignbot.errors import InvalidInputError
from campaignbot.subscribers.model import Subscriber, SubscriberInput
from campaignbot.subscribers.store import SubscriberStore


@subscribers.command()
@click.argument("email")
@click.option("--reason", required=True, help="Why, for the record (e.g. 'asked by phone').")
@pass_context
@handle_errors
def suppress(ctx: Context, email: str, reason: str) -> None:
    """Never email EMAIL again; the record is kept (or created) so that an import or a
    sign-up cannot add it back."""
    locale, zone = campaign_defaults(ctx)
    try:
        entry = SubscriberInput.create(email, locale=locale, timezone=zone)
    except ValueError as err:
        raise InvalidInputError(str(err)) from None
    if not reason.strip():
        raise InvalidInputError("--reason: say why, for the record")

    async def apply() -> tuple[Subscriber, bool]:
        async with open_store(ctx) as db:
            return await SubscriberStore(db).suppress(entry, reason=reason.strip(), now=ctx.now())

    subscriber, changed = run_async(apply())
    click.echo(
        f"suppressed {subscriber.email}" if changed else f"{subscriber.email}: already suppressed"
    )


@subscribers.command()
@click.argument("email")
@pass_context
@handle_errors
def unsuppress(ctx: Context, email: str) -> None:
    """Lift a suppression: active again if the subscriber had given consent, otherwise
    unsubscribed (they can sign up on the web page)."""

    async def apply() -> Subscriber | None:
        async with open_store(ctx) as db:
            return await SubscriberStore(db).unsuppress(email, now=ctx.now())

    subscriber = run_async(apply())
    if subscriber is None:
        raise InvalidInputError(f"{email}: not a suppressed subscriber")
    click.echo(f"{subscriber.email}: {subscriber.status.value}")
