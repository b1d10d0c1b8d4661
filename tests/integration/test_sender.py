"""The sender against a real aiosmtpd server with faults injected, on SQLite and PostgreSQL.

Every deliverable message must arrive exactly once (counted by recipient at the server),
every undeliverable one must be recorded. A FakeClock makes retries due without waiting.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from campaignbot.campaign.model import Campaign, parse_campaign
from campaignbot.delivery.ledger import Claim, Ledger
from campaignbot.delivery.sender import Sender
from campaignbot.delivery.transport import SMTPTransport
from campaignbot.email.render import Renderer
from campaignbot.email.tokens import LinkSigner
from campaignbot.settings import Settings
from campaignbot.storage.database import Database
from campaignbot.storage.tables import deliveries, subscribers
from tests.clock import FakeClock
from tests.conftest import REPO
from tests.fixtures.smtp import SMTPServer
from tests.integration.test_ledger import EVERYONE, Alert, insert_subscribers

T0 = datetime(2030, 6, 10, 9, 0, tzinfo=UTC)


def make_campaign(status: str = "scheduled") -> Campaign:
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
                    "title": {"en": "Final vote", "fi": "Äänestys"},
                    "when": "2030-06-17T10:00:00+03:00",
                    "reminders": ["7d", "1d", "0"],
                    "status": status,
                }
            ],
        },
        source="test.toml",
    )


@dataclass
class Rig:
    """A database, a server, and a sender wired together."""

    db: Database
    server: SMTPServer
    clock: FakeClock
    ledger: Ledger
    sender: Sender
    campaign: Campaign

    def received(self) -> Counter[str]:
        return Counter(r for m in self.server.messages for r in m.rcpt_tos)

    async def fire(self, reminder: str = "1d") -> int:
        result = await self.ledger.fire_alert(Alert("vote", reminder), EVERYONE, now=self.clock())
        return result.alert_id

    async def statuses(self) -> Counter[str]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(deliveries.c.status))
            return Counter(r.status for r in rows)


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig(db: Database, smtp_server: Any) -> AsyncIterator[MakeRig]:
    transports: list[SMTPTransport] = []

    async def make(
        *,
        start: bool = True,
        ledger: Ledger | None = None,
        batch_size: int = 100,
        server_options: dict[str, Any] | None = None,
        **smtp: Any,
    ) -> Rig:
        server: SMTPServer = await smtp_server(start=start, **(server_options or {}))
        settings = Settings(smtp=server.smtp_settings(**smtp), lease_s=60)
        transport = SMTPTransport(settings.smtp)
        transports.append(transport)
        clock = FakeClock(T0)
        campaign = make_campaign()
        renderer = Renderer(
            REPO / "templates", campaign, signer=LinkSigner("test-key"), public_url="https://x.org"
        )
        rig = Rig(db, server, clock, ledger or Ledger(db, owner="test"), None, campaign)  # type: ignore[arg-type]
        rig.sender = Sender(
            rig.ledger,
            transport,
            lambda: (renderer, rig.campaign),
            clock=clock,
            settings=settings,
            batch_size=batch_size,
            rand=lambda: 0.5,
        )
        return rig

    yield make
    for transport in transports:
        await transport.aclose()


async def test_it_delivers_each_message_once_with_headers(rig: MakeRig) -> None:
    r = await rig(max_connections=4)
    await insert_subscribers(r.db, 30)
    await r.fire()
    totals = await r.sender.run_until_idle()
    assert totals == {"sent": 30}
    assert set(r.received().values()) == {1} and len(r.received()) == 30
    assert r.server.max_concurrent <= 4
    message = r.server.messages[0].message
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert r.server.messages[0].mail_from == "alerts@example.org"
    async with r.db.engine.connect() as conn:
        row = (await conn.execute(select(deliveries).limit(1))).one()
    assert row.status == "sent" and row.message_id and row.message_id.startswith("<")
    assert r.sender.stats.sent == 30 and len(r.sender.stats.latencies_s) == 30


async def test_a_451_is_retried_later_and_delivered_once(rig: MakeRig) -> None:
    r = await rig()
    await insert_subscribers(r.db, 10)
    await r.fire()
    r.server.fail("RCPT", "451 4.3.0 try later", when=lambda a: a[1] in "02468")
    assert await r.sender.run_until_idle() == {"sent": 5, "retry": 5}
    r.server.faults.clear()
    assert await r.sender.run_until_idle() == {}  # not due yet
    r.clock.advance(seconds=36)  # 30 s backoff, jitter at most +20 %
    assert await r.sender.run_until_idle() == {"sent": 5}
    assert set(r.received().values()) == {1} and len(r.received()) == 10
    assert await r.statuses() == {"sent": 10}


async def test_a_550_fails_without_retry_and_three_suppress_the_address(rig: MakeRig) -> None:
    r = await rig()
    await insert_subscribers(r.db, 5)
    r.server.fail("RCPT", "550 5.1.1 no such user", recipient="s3@example.org")
    for reminder in ("7d", "1d"):
        await r.fire(reminder)
    assert await r.sender.run_until_idle() == {"sent": 8, "failed": 2}
    r.clock.advance(hours=2)
    assert await r.sender.run_until_idle() == {}  # failed means not retried
    await r.fire("0")
    assert await r.sender.run_until_idle() == {"sent": 4, "failed": 1}
    assert r.received()["s3@example.org"] == 0 and len(r.received()) == 4
    async with r.db.engine.connect() as conn:
        row = (
            await conn.execute(select(subscribers).where(subscribers.c.email == "s3@example.org"))
        ).one()
        codes = list((await conn.execute(select(deliveries.c.last_code).where(
            deliveries.c.status == "failed"))).scalars())  # fmt: skip
    assert (row.status, row.hard_bounces) == ("bounced", 3)
    assert codes == [550, 550, 550]


async def test_a_drop_mid_data_is_uncertain_then_retried_once(rig: MakeRig) -> None:
    r = await rig()
    await insert_subscribers(r.db, 6)
    await r.fire()
    r.server.fail("DATA", drop=True, recipient="s1@example.org", times=1)
    r.server.fail("DATA", drop=True, recipient="s2@example.org")  # always
    assert await r.sender.run_until_idle() == {"sent": 4, "uncertain": 2}
    r.clock.advance(minutes=1)
    assert await r.sender.run_until_idle() == {"sent": 1, "failed": 1}
    assert await r.statuses() == {"sent": 5, "failed": 1}
    assert r.received()["s1@example.org"] == 1 and r.received()["s2@example.org"] == 0
    [line] = (await r.ledger.status_summary(now=r.clock())).alerts
    assert (line.sent, line.failed, line.uncertain) == (5, 1, 2)
    assert r.sender.stats.uncertain == 2


async def test_a_server_that_is_down_then_up_gets_everything(rig: MakeRig) -> None:
    r = await rig(start=False, max_connections=2)
    await insert_subscribers(r.db, 40)
    await r.fire()
    first = await r.sender.run_until_idle()
    assert first == {"paused": 40}  # the relay is down: nobody's attempt is used up
    assert await attempts(r) == {"pending": [0] * 40}
    assert await r.sender.run_until_idle() == {}  # paused, not spinning
    await r.server.start()
    r.clock.advance(minutes=1)
    assert await r.sender.run_until_idle() == {"sent": 40}
    assert set(r.received().values()) == {1} and len(r.received()) == 40


async def attempts(r: Rig) -> dict[str, list[int]]:
    async with r.db.engine.connect() as conn:
        rows = await conn.execute(select(deliveries.c.status, deliveries.c.attempts))
        found: dict[str, list[int]] = {}
        for row in rows:
            found.setdefault(row.status, []).append(row.attempts)
        return found


@pytest.mark.parametrize(
    ("fault", "reply"),
    [("EHLO", "504 5.5.2 need fully-qualified hostname"), ("AUTH", None)],
)
async def test_a_relay_refusing_ehlo_or_auth_pauses_sending_without_using_attempts(
    rig: MakeRig, fault: str, reply: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    options: dict[str, Any] = {} if fault == "EHLO" else {"auth": ("alice", "s3cret")}
    r = await rig(max_connections=2, server_options=options, password="wrong")
    r.server.ehlo_reply = reply
    await insert_subscribers(r.db, 10)
    await r.fire()
    caplog.set_level("INFO", logger="campaignbot.delivery.relay_health")

    assert await r.sender.run_until_idle() == {"paused": 10}
    r.clock.advance(minutes=1)
    assert await r.sender.run_until_idle() == {"paused": 10}

    assert await attempts(r) == {"pending": [0] * 10}
    assert r.server.messages == []
    ours = [rec for rec in caplog.records if rec.name.startswith("campaignbot")]
    down = [rec for rec in ours if rec.levelname == "WARNING"]
    assert len(down) == 1  # once, not per delivery or per batch
    assert ("504 5.5.2" if fault == "EHLO" else "535 5.7.8") in down[0].getMessage()
    r.server.ehlo_reply = None  # the operator fixed the name or the password
    if fault == "AUTH":
        r.server.accept_login("alice", "wrong")
    r.clock.advance(minutes=1)
    assert await r.sender.run_until_idle() == {"sent": 10}
    [up] = [
        rec
        for rec in caplog.records
        if rec.name.endswith("relay_health") and rec.levelname == "INFO"
    ]
    assert "back up" in up.getMessage()


async def test_a_slow_server_still_gets_everything_within_the_connection_limit(
    rig: MakeRig,
) -> None:
    r = await rig(max_connections=3)
    await insert_subscribers(r.db, 12)
    await r.fire()
    r.server.fail("DATA", delay_s=0.1)
    assert await r.sender.run_until_idle() == {"sent": 12}
    assert r.server.max_concurrent == 3 and len(r.received()) == 12


async def test_a_timeout_after_data_is_uncertain(rig: MakeRig) -> None:
    r = await rig(timeout_s=0.3)
    await insert_subscribers(r.db, 2)
    await r.fire()
    r.server.fail("DATA", delay_s=1.0, recipient="s0@example.org", times=1)
    assert await r.sender.run_until_idle() == {"sent": 1, "uncertain": 1}
    r.clock.advance(minutes=1)
    assert await r.sender.run_until_idle() == {"sent": 1}


class UnsubscribingLedger(Ledger):
    """Unsubscribes one subscriber right after the claim, as a click on the link would."""

    email = "s1@example.org"

    async def claim(self, limit: int, *, now: datetime, lease_s: float) -> list[Claim]:
        claims = await super().claim(limit, now=now, lease_s=lease_s)
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(subscribers)
                .where(subscribers.c.email == self.email)
                .values(status="unsubscribed")
            )
        return claims


async def test_it_skips_a_subscriber_who_unsubscribed_after_the_claim(
    rig: MakeRig, db: Database
) -> None:
    r = await rig(ledger=UnsubscribingLedger(db, owner="test"))
    await insert_subscribers(r.db, 3)
    await r.fire()
    assert await r.sender.run_until_idle() == {"sent": 2, "skipped": 1}
    assert r.received()["s1@example.org"] == 0


async def test_alerts_of_a_cancelled_event_are_skipped(rig: MakeRig) -> None:
    r = await rig()
    await insert_subscribers(r.db, 3)
    await r.fire()
    r.campaign = make_campaign(status="cancelled")
    assert await r.sender.run_until_idle() == {"skipped": 3}
    assert not r.server.messages


async def test_a_notice_goes_out_for_a_postponed_event(rig: MakeRig) -> None:
    r = await rig()
    await insert_subscribers(r.db, 2)
    await r.fire()
    await r.sender.run_until_idle()
    r.campaign = make_campaign(status="postponed")
    await r.ledger.fire_notice("vote", change="postponed", sequence=1, now=r.clock())
    assert await r.sender.run_until_idle() == {"sent": 2}
    assert r.received() == {"s0@example.org": 2, "s1@example.org": 2}


async def test_stop_finishes_in_flight_sends_and_releases_the_rest(rig: MakeRig) -> None:
    r = await rig(max_connections=1)
    await insert_subscribers(r.db, 20)
    r.server.fail("DATA", delay_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(r.sender.run(stop))
    r.sender.wake()
    await r.fire()
    r.sender.wake()
    await r.server.wait_for_messages(3)
    stop.set()
    await asyncio.wait_for(task, 5)
    statuses = await r.statuses()
    assert "sending" not in statuses
    assert statuses["sent"] == len(r.server.messages) < 20
    assert statuses["sent"] + statuses["pending"] == 20


async def test_two_senders_share_the_work_and_send_each_message_once(
    rig: MakeRig, db: Database
) -> None:
    a = await rig(ledger=Ledger(db, owner="a"), batch_size=20)
    b = await rig(ledger=Ledger(db, owner="b"), batch_size=20)
    b.server = a.server  # one server counts both
    b.sender.transport = SMTPTransport(a.server.smtp_settings())
    await insert_subscribers(db, 200)
    await a.fire()
    ta, tb = await asyncio.gather(a.sender.run_until_idle(), b.sender.run_until_idle())
    await b.sender.transport.aclose()
    assert ta["sent"] + tb["sent"] == 200
    assert set(a.received().values()) == {1} and len(a.received()) == 200
