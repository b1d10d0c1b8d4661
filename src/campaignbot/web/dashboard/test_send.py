""" "Send a test to me" from the alert page: the `campaignbot send --to` path.

One message, rendered for a sample recipient in the campaign's default language and
zone, handed to the transport; the ledger is not touched and no subscriber is read.
"""

from __future__ import annotations

import logging

from campaignbot.email.render import Recipient
from campaignbot.errors import CampaignbotError, InvalidInputError
from campaignbot.subscribers.model import normalize_email
from campaignbot.web.dashboard.context import DashboardContext

logger = logging.getLogger(__name__)


async def send_test(ctx: DashboardContext, key: str, address: str, *, user: str) -> str:
    """Send alert `key` (`event:reminder`) to `address`; returns the address as normalised.

    Raises InvalidInputError for a bad address or an alert the campaign does not plan,
    CampaignbotError when the transport fails.
    """
    try:
        to = normalize_email(address)
    except ValueError as err:
        raise InvalidInputError(f"{address}: {err}") from None
    snapshot = ctx.snapshot()
    planned = next((a for a in snapshot.plan if a.key == key), None)
    if planned is None:
        raise InvalidInputError(f"{key}: not an alert of the running campaign")
    campaign = snapshot.campaign
    info = campaign.campaign
    event = campaign.event(planned.event_id)
    sample = Recipient(0, to, "", info.default_locale, info.timezone.key)
    message = snapshot.renderer.render_alert(event, planned.reminder, sample, now=ctx.clock())
    try:
        await ctx.send_mail(message, sender=info.sender_address.addr_spec, recipient=to)
    except (OSError, TimeoutError) as err:
        raise CampaignbotError(f"test message to {to} not sent: {err}") from err
    logger.info(
        "admin: %s sent a test of %s",
        user,
        key,
        extra={"action": "admin_test_sent", "user": user, "alert": key},
    )
    return to
