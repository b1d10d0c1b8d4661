"""Bounce and complaint reports as plain data, shared by the mailbox reader and the web hooks.

Pure: the mailbox parser (`delivery.bounces.dsn`), the relay webhook parsers
(`delivery.bounces.webhooks`) and the web routes (`web.hooks`) all speak this type, so the
web layer never needs to import `delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReportKind(StrEnum):
    HARD = "hard"  # permanent and about the address (5.1.x, 5.2.1...): counts to suppression
    SOFT = "soft"  # any other failure: suppresses only after N in M days
    COMPLAINT = "complaint"  # the recipient marked it as spam (ARF, relay event)
    OTHER = "other"  # not a bounce (an auto-reply, a delay warning, spam): left alone


@dataclass(frozen=True)
class BounceReport:
    """One recipient's outcome reported after the relay accepted the message."""

    #: where it came from: maildir, imap, mailgun, sendgrid, postmark
    source: str
    #: unique per report: the mailbox's message name / IMAP UID, or the relay's event id;
    #: a report whose key was seen before changes nothing
    key: str
    kind: ReportKind
    #: the failing recipient as reported (may be missing in non-standard bounces)
    email: str | None = None
    #: the VERP tag from the return path the report was sent to, unverified
    tag: str | None = None
    #: the original message's Message-ID, without angle brackets
    message_id: str | None = None
    #: the enhanced status code, e.g. "5.1.1"
    status: str | None = None
    #: the remote SMTP reply code, e.g. 550
    smtp_code: int | None = None
    #: the diagnostic text or the relay's reason, one line
    diagnostic: str = ""


def bare_message_id(value: str | None) -> str | None:
    """`<abc@host>` -> `abc@host`; None or blank -> None."""
    if value is None:
        return None
    value = value.strip().strip("<>").strip()
    return value or None
