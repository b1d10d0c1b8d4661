"""The bounce reader over IMAPS against a real Dovecot, fed by a real Postfix DSN.

Postfix bounces a message for a dead address to the VERP address; the DSN it writes is
delivered into the Dovecot account's INBOX; the reader logs in over TLS (the test's own
CA), records it and moves it to the processed folder (or flags it), never deleting.
"""

from __future__ import annotations

import asyncio
import smtplib
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from campaignbot.delivery.bounces.reader import read_bounces_once
from campaignbot.delivery.bounces.verp import derive_key, return_path
from campaignbot.delivery.ledger import Ledger
from campaignbot.errors import DeliveryError
from campaignbot.settings import BounceSettings, Settings
from campaignbot.storage.database import Database
from campaignbot.storage.tables import deliveries
from campaignbot.subscribers.model import SubscriberInput, SubscriberStatus
from campaignbot.subscribers.store import SubscriberStore
from tests.bounce_samples import dsn, sample
from tests.clock import FakeClock
from tests.fixtures.mailservers import DovecotServer, PostfixServer
from tests.integration.test_ledger import EVERYONE, Alert

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
SECRET = "k" * 40
DEAD = "someone@dead.example.com"


def _settings(server: DovecotServer, processed: str) -> Settings:
    return Settings(
        secret_key=SECRET,
        bounce_address=PostfixServer.bounce_address,
        bounces=BounceSettings(
            imap_url=server.url(),  # type: ignore[arg-type]
            imap_ca_file=server.ca_file,
            processed_folder=processed,
            hard_limit=1,
        ),
    )


async def _sent_delivery(db: Database) -> int:
    store = SubscriberStore(db)
    entry = SubscriberInput.create(DEAD, locale="en", timezone="Europe/Helsinki")
    await store.add(entry, now=T0, source="test")
    await Ledger(db, owner="t").fire_alert(Alert("vote", "7d"), EVERYONE, now=T0)
    async with db.engine.begin() as conn:
        delivery_id = int((await conn.execute(select(deliveries.c.id))).scalar_one())
        await conn.execute(update(deliveries).values(status="sent", sent_at=T0))
    return delivery_id


def _postfix_dsn(postfix: PostfixServer, envelope_sender: str) -> bytes:
    """Send one message for the dead address through Postfix; return the DSN it wrote."""
    with smtplib.SMTP(postfix.host, postfix.port) as client:
        client.sendmail(
            envelope_sender, [DEAD], b"Subject: vote\r\nMessage-ID: <a@b>\r\n\r\nhi\r\n"
        )
    [path] = postfix.wait_for_mail(1)
    return path.read_bytes()


@pytest.mark.parametrize("processed", ["Processed", ""], ids=["move", "flag"])
async def test_dovecot_serves_a_real_postfix_dsn_to_the_reader(
    db: Database, postfix_server: PostfixServer, dovecot_server: DovecotServer, processed: str
) -> None:
    delivery_id = await _sent_delivery(db)
    verp = return_path(postfix_server.bounce_address, derive_key(SECRET), delivery_id)
    data = await asyncio.to_thread(_postfix_dsn, postfix_server, verp)
    dovecot_server.deliver(data, "1900000000.M1P1.mx")
    dovecot_server.deliver(sample("vacation.eml"), "1900000001.M2P1.mx")
    settings = _settings(dovecot_server, processed)
    clock = FakeClock(T0)

    summary = await read_bounces_once(db, settings, clock=clock)
    assert (summary.messages, summary.actions) == (2, {"suppressed": 1, "ignored": 1})
    subscriber = await SubscriberStore(db).get_by_email(DEAD)
    assert subscriber is not None and subscriber.status is SubscriberStatus.BOUNCED
    # nothing was deleted: moved to the processed folder, or still in INBOX with a flag
    inbox = [
        *(dovecot_server.maildir / "new").iterdir(),
        *(dovecot_server.maildir / "cur").iterdir(),
    ]
    if processed:
        assert inbox == []
        folder = dovecot_server.maildir / f".{processed}"
        assert len([*(folder / "new").iterdir(), *(folder / "cur").iterdir()]) == 2
    else:
        assert len(inbox) == 2
    # the next minute finds nothing new
    again = await read_bounces_once(db, settings, clock=clock)
    assert (again.messages, again.actions) == (0, {})
    # a new arrival is read on its own
    dovecot_server.deliver(
        dsn(verp, [(DEAD, "failed", "5.1.1", "smtp; 550 x")]), "1900000002.M3P1.mx"
    )
    third = await read_bounces_once(db, settings, clock=clock)
    assert third.messages == 1 and third.actions == {"already recorded": 1}


async def test_a_wrong_password_is_a_clear_error(
    db: Database, dovecot_server: DovecotServer
) -> None:
    settings = Settings(
        secret_key=SECRET,
        bounces=BounceSettings(
            imap_url=dovecot_server.url().replace(":secret@", ":wrong@"),  # type: ignore[arg-type]
            imap_ca_file=dovecot_server.ca_file,
        ),
    )
    with pytest.raises(DeliveryError, match=r"127\.0\.0\.1:\d+: IMAP LOGIN failed"):
        await read_bounces_once(db, settings, clock=FakeClock(T0))
