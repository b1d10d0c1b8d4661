"""One pass over the bounce mailbox: read, parse, record, mark done; one reader at a time.

The service calls `read_bounces_once` every `bounces.interval_s` (60 s). With PostgreSQL
several processes may share the database: a session-level advisory lock lets one of them
read while the others return at once. Each message is recorded before it is marked done,
and its reports' unique keys make reading it twice harmless (a crash mid-batch).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from campaignbot.delivery.bounces.dsn import parse_report
from campaignbot.delivery.bounces.mailbox import IMAPAccount, IMAPMailbox, Mailbox, MaildirMailbox
from campaignbot.delivery.bounces.recorder import BounceRecorder, BounceRules
from campaignbot.delivery.bounces.verp import derive_key
from campaignbot.errors import ConfigError, Problem
from campaignbot.settings import Settings, secret_key
from campaignbot.storage.database import Database

logger = logging.getLogger(__name__)

#: pg_try_advisory_lock key of the bounce reader ("cbbounce" as a number)
ADVISORY_LOCK_ID = 0x6362626F756E6365


@dataclass
class ReadSummary:
    """What one pass did."""

    locked_out: bool = False  # another process holds the reader lock
    messages: int = 0
    actions: Counter[str] = field(default_factory=Counter)


@contextlib.asynccontextmanager
async def reader_lock(db: Database) -> AsyncIterator[bool]:
    """PostgreSQL: hold the reader's advisory lock (yields False if someone else has it).

    SQLite: always True (one process writes a SQLite file; the unique keys still guard).
    """
    if not db.is_postgres:
        yield True
        return
    async with db.engine.connect() as conn:
        got = bool(
            (
                await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_ID})
            ).scalar()
        )
        await conn.commit()
        try:
            yield got
        finally:
            if got:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_ID})
                await conn.commit()


def recorder_for(db: Database, settings: Settings) -> BounceRecorder:
    """The recorder with the VERP key and the suppression rules from settings."""
    b = settings.bounces
    rules = BounceRules(hard_limit=b.hard_limit, soft_limit=b.soft_limit, soft_days=b.soft_days)
    verp_key = derive_key(secret_key(settings))
    return BounceRecorder(db, verp_key=verp_key, rules=rules)


def mailbox_from_settings(settings: Settings) -> MaildirMailbox | IMAPMailbox | None:
    """The configured bounce mailbox (IMAP wins over Maildir), None when none is set."""
    b = settings.bounces
    if b.imap_url is not None:
        try:
            account = IMAPAccount.from_url(b.imap_url.get_secret_value())
        except ValueError as err:
            raise ConfigError(
                [Problem("environment", "CAMPAIGNBOT_BOUNCES__IMAP_URL", str(err))]
            ) from None
        return IMAPMailbox(
            account, folder=b.imap_folder, processed=b.processed_folder, ca_file=b.imap_ca_file
        )
    if b.maildir is not None:
        return MaildirMailbox(Path(b.maildir))
    return None


async def drain_mailbox(
    mailbox: Mailbox,
    recorder: BounceRecorder,
    *,
    clock: Callable[[], datetime],
    bounce_address: str | None,
    summary: ReadSummary,
) -> None:
    """Record every unprocessed message of an open mailbox, then mark it done."""
    async for message in mailbox.messages():
        reports = parse_report(
            message.data, source=mailbox.source, key=message.key, bounce_address=bounce_address
        )
        results = await recorder.record(reports, now=clock())
        await mailbox.mark_done(message)
        summary.messages += 1
        summary.actions.update(r.action for r in results)


async def read_bounces_once(
    db: Database,
    settings: Settings,
    *,
    clock: Callable[[], datetime],
    mailbox: MaildirMailbox | IMAPMailbox | None = None,
) -> ReadSummary:
    """Read the bounce mailbox once (the service's every-minute job).

    Raises DeliveryError when the mailbox cannot be read (the job logs it and tries
    again next minute); what was recorded before stays recorded.
    """
    summary = ReadSummary()
    mailbox = mailbox if mailbox is not None else mailbox_from_settings(settings)
    if mailbox is None:
        return summary
    async with reader_lock(db) as got:
        if not got:
            summary.locked_out = True
            logger.debug("bounce reader: another process is reading")
            return summary
        recorder = recorder_for(db, settings)
        bounce_address = settings.bounce_address
        if isinstance(mailbox, IMAPMailbox):
            async with mailbox:
                await drain_mailbox(
                    mailbox, recorder, clock=clock, bounce_address=bounce_address, summary=summary
                )
        else:
            await drain_mailbox(
                mailbox, recorder, clock=clock, bounce_address=bounce_address, summary=summary
            )
    if summary.messages:
        logger.info(
            "bounce mailbox: %d messages read (%s)",
            summary.messages,
            ", ".join(f"{n} {a}" for a, n in sorted(summary.actions.items())),
            extra={"action": "bounces_read", "counts": dict(summary.actions)},
        )
    return summary
