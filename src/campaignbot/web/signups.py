"""Sending the double opt-in mails of the sign-up form: `drain_signup_outbox`.

POST /subscribe only records the request (subscribers/signups.py). This drain turns
requests into pending sign-ups and sends the mails owed. The web app runs it after
answering; the service should run it too, on its tick (see the function), so requests
taken while the process was down or the relay was away still get their mail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

from campaignbot.email.render import Recipient
from campaignbot.errors import CampaignbotError, DeliveryError
from campaignbot.subscribers.signups import Signup, SignupStore

logger = logging.getLogger(__name__)


class MailSender(Protocol):
    """The transport's `send`: hands one message to SMTP or the Maildir."""

    async def __call__(self, message: EmailMessage, *, sender: str, recipient: str) -> str: ...


#: renders the confirmation mail of one pending sign-up
RenderConfirm = Callable[[Recipient, datetime], EmailMessage]


async def drain_signup_outbox(
    store: SignupStore,
    *,
    render_confirm: RenderConfirm,
    sender: str,
    send_mail: MailSender,
    clock: Callable[[], datetime],
    limit: int = 100,
) -> dict[str, int]:
    """Take waiting sign-up requests, send the confirmation mails owed, purge sign-ups
    older than 7 days. Returns counts: taken, sent, failed (permanent), retry.

    Safe to run concurrently and after a crash: each mail is claimed first (a lease),
    so two drains never send one twice, and a claimed mail whose sender died goes out
    after the lease. The mail carries no name or other text the visitor typed: the
    request may come from anybody, and the mail goes to somebody else.
    """
    counts = {"taken": 0, "sent": 0, "failed": 0, "retry": 0}
    now = clock()
    counts["taken"] = await store.take_requests(now=now, limit=limit)
    await store.purge(now=now)
    for signup in await store.due_mails(now=now, limit=limit):
        if not await store.claim_mail(signup, now=now):
            continue
        outcome = await _send(store, signup, render_confirm, sender, send_mail, clock())
        counts[outcome] += 1
    return counts


async def _send(
    store: SignupStore,
    signup: Signup,
    render_confirm: RenderConfirm,
    sender: str,
    send_mail: MailSender,
    now: datetime,
) -> str:
    to = Recipient(signup.id, signup.email, "", signup.locale, signup.timezone, signup.nonce)
    extra = {"action": "confirm_mail_sent", "signup": signup.id}
    try:
        message = render_confirm(to, now)
    except Exception as err:  # a render error never gets better by retrying
        failed = {**extra, "action": "confirm_mail_failed"}
        if isinstance(err, UnicodeError):  # a non-ASCII address this message cannot carry
            logger.warning(
                "sign-up %d: cannot write to a non-ASCII address: %s", signup.id, err, extra=failed
            )
        else:
            logger.exception(
                "sign-up %d: confirmation mail cannot be rendered", signup.id, extra=failed
            )
        await store.mail_sent(signup)
        return "failed"
    try:
        await send_mail(message, sender=sender, recipient=signup.email)
    except UnicodeError as err:  # the message cannot carry this address: never retried
        logger.warning(
            "sign-up %d: cannot write to a non-ASCII address: %s",
            signup.id,
            err,
            extra={**extra, "action": "confirm_mail_failed"},
        )
        await store.mail_sent(signup)
        return "failed"
    except DeliveryError as err:
        if err.permanent:
            logger.warning(
                "sign-up %d: confirmation mail refused: %s",
                signup.id,
                err,
                extra={**extra, "action": "confirm_mail_failed"},
            )
            await store.mail_sent(signup)
            return "failed"
        return await _retry(store, signup, err)
    except (CampaignbotError, OSError, TimeoutError) as err:
        return await _retry(store, signup, err)
    await store.mail_sent(signup)
    logger.info("sign-up %d: confirmation mail sent", signup.id, extra=extra)
    return "sent"


async def _retry(store: SignupStore, signup: Signup, err: BaseException) -> str:
    logger.warning(
        "sign-up %d: confirmation mail not sent, will retry: %s",
        signup.id,
        err,
        extra={"action": "confirm_mail_retry", "signup": signup.id},
    )
    await store.mail_failed(signup)
    return "retry"
