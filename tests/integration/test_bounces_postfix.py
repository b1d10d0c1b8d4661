"""A real Postfix accepts mail for a dead address, then bounces it to the VERP address.

campaignbot sends through Postfix on loopback with `bounces+TAG@bounce.example.com` as
the envelope sender; Postfix answers 250, then its `error:` transport generates a
genuine RFC 3464 DSN that its virtual delivery agent writes into a Maildir. The bounce
reader reads that Maildir, and after `hard_limit` bounces the subscriber is suppressed
and gets no further alert. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from campaignbot.campaign.model import parse_campaign
from campaignbot.delivery.bounces.reader import read_bounces_once
from campaignbot.delivery.bounces.verp import derive_key, make_tag
from campaignbot.delivery.ledger import Ledger
from campaignbot.delivery.sender import Sender
from campaignbot.delivery.transport import SMTPTransport
from campaignbot.email.render import Renderer
from campaignbot.email.tokens import LinkSigner
from campaignbot.settings import BounceSettings, Settings, SMTPSettings, TLSMode
from campaignbot.storage.database import Database
from campaignbot.storage.tables import bounce_reports, deliveries
from campaignbot.subscribers.model import SubscriberInput, SubscriberStatus
from campaignbot.subscribers.store import SubscriberStore
from tests.clock import FakeClock
from tests.conftest import REPO
from tests.fixtures.mailservers import PostfixServer
from tests.integration.test_ledger import EVERYONE, Alert

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
SECRET = "k" * 40
DEAD = "someone@dead.example.com"
ALIVE = "reader@alive.example.com"


def _campaign():  # type: ignore[no-untyped-def]
    return parse_campaign(
        {
            "campaign": {
                "name": "Stay in the Mine Ban Treaty",
                "sender": "Mine Ban Alerts <alerts@example.org>",
                "timezone": "Europe/Helsinki",
            },
            "events": [
                {
                    "id": "vote",
                    "title": {"en": "Final vote"},
                    "when": "2030-06-17T10:00:00+03:00",
                    "reminders": ["7d", "3d", "1d"],
                }
            ],
        },
        source="test.toml",
    )


async def test_a_real_postfix_dsn_suppresses_the_dead_address(
    db: Database, postfix_server: PostfixServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="campaignbot")
    settings = Settings(
        smtp=SMTPSettings(
            host=postfix_server.host, port=postfix_server.port, tls=TLSMode.NONE, timeout_s=10
        ),
        secret_key=SECRET,
        bounce_address=postfix_server.bounce_address,
        bounces=BounceSettings(maildir=postfix_server.maildir, hard_limit=2),
    )
    store = SubscriberStore(db)
    for address in (DEAD, ALIVE):
        entry = SubscriberInput.create(address, locale="en", timezone="Europe/Helsinki")
        await store.add(entry, now=T0, source="test")
    clock = FakeClock(T0)
    ledger = Ledger(db, owner="test")
    campaign = _campaign()
    renderer = Renderer(
        REPO / "templates", campaign, signer=LinkSigner(SECRET), public_url="https://x.org"
    )
    transport = SMTPTransport(settings.smtp)
    sender = Sender(ledger, transport, lambda: (renderer, campaign), clock=clock, settings=settings)
    key = derive_key(SECRET)
    try:
        for round_, reminder in enumerate(("7d", "3d"), start=1):
            fired = await ledger.fire_alert(Alert("vote", reminder), EVERYONE, now=clock())
            assert fired.deliveries == 2
            # Postfix accepts both: the dead address too ("250 queued"), as real relays do
            assert (await sender.run_until_idle())["sent"] == 2
            async with db.engine.connect() as conn:
                dead_delivery = (
                    (
                        await conn.execute(
                            select(deliveries.c.id)
                            .where(deliveries.c.alert_id == fired.alert_id)
                            .order_by(deliveries.c.subscriber_id)
                        )
                    )
                    .scalars()
                    .first()
                )
            assert dead_delivery is not None
            tag = make_tag(key, dead_delivery)
            assert f"from=<bounces+{tag}@bounce.example.com>" in postfix_server.log_text()
            await asyncio.to_thread(postfix_server.wait_for_mail, 1)  # the last one was read
            clock.advance(minutes=1)
            summary = await read_bounces_once(db, settings, clock=clock)
            assert summary.messages == 1
            subscriber = await store.get_by_email(DEAD)
            assert subscriber is not None
            assert subscriber.hard_bounces == round_
            if round_ == 1:
                assert summary.actions == {"counted": 1}
                assert subscriber.status is SubscriberStatus.ACTIVE
            else:
                assert summary.actions == {"suppressed": 1}
                assert subscriber.status is SubscriberStatus.BOUNCED
            async with db.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(deliveries.c.status, deliveries.c.last_error).where(
                            deliveries.c.id == dead_delivery
                        )
                    )
                ).one()
            # the delivery's final state after the fact, with the DSN's code and text
            assert row.status == "bounced"
            assert row.last_error == "5.1.1 mailbox unavailable"
            counts = await ledger.alert_counts(fired.alert_id)
            assert counts == {"sent": 1, "bounced": 1}  # bounced replaces sent

        # a suppressed address gets no further alert
        fired = await ledger.fire_alert(Alert("vote", "1d"), EVERYONE, now=clock())
        assert fired.deliveries == 1
        assert (await sender.run_until_idle())["sent"] == 1

        # reading again finds nothing new and counts nothing twice
        assert (await read_bounces_once(db, settings, clock=clock)).messages == 0
        async with db.engine.connect() as conn:
            reports = (await conn.execute(select(bounce_reports))).mappings().all()
        assert [(r["kind"], r["status_code"], r["action"]) for r in reports] == [
            ("hard", "5.1.1", "counted"),
            ("hard", "5.1.1", "suppressed"),
        ]
    finally:
        await transport.aclose()
    # the evidence for the issue note: Postfix's log, then campaignbot's
    print("\n--- postfix log ---\n" + postfix_server.log_text())
    print("--- campaignbot log ---")
    for record in caplog.records:
        if record.name.startswith("campaignbot.delivery.bounces"):
            print(f"{record.levelname} {record.name}: {record.getMessage()}")
