"""The bounce reader and recorder on a real Maildir and a real database (SQLite, PostgreSQL).

Deliveries are fired through the ledger and marked sent directly; the bounce reports are
RFC 3464 DSNs in Postfix's layout and an RFC 5965 abuse report, written into a Maildir
the way an MTA delivers (tmp/ then new/).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from campaignbot.delivery.bounces.reader import ReadSummary, read_bounces_once, reader_lock
from campaignbot.delivery.bounces.verp import derive_key, return_path
from campaignbot.delivery.ledger import Ledger
from campaignbot.settings import BounceSettings, Settings
from campaignbot.storage.database import Database
from campaignbot.storage.tables import bounce_reports, deliveries
from campaignbot.subscribers.model import SubscriberInput, SubscriberStatus
from campaignbot.subscribers.store import SubscriberStore
from tests.bounce_samples import dsn, sample
from tests.clock import FakeClock
from tests.integration.test_ledger import EVERYONE, Alert

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
SECRET = "k" * 40
BOUNCES = "bounces@example.org"
KEY = derive_key(SECRET)
_names = itertools.count()


def deliver(maildir: Path, data: bytes) -> str:
    """Put a message into the Maildir as an MTA does: write in tmp/, rename into new/."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    name = f"1900000000.M{next(_names):06d}P1.test"
    (maildir / "tmp" / name).write_bytes(data)
    (maildir / "tmp" / name).rename(maildir / "new" / name)
    return name


@dataclass
class Rig:
    db: Database
    store: SubscriberStore
    ledger: Ledger
    clock: FakeClock
    maildir: Path
    settings: Settings

    async def add(self, *emails: str) -> list[int]:
        ids = []
        for email in emails:
            entry = SubscriberInput.create(email, locale="en", timezone="Europe/Helsinki")
            ids.append((await self.store.add(entry, now=self.clock(), source="test")).id)
        return ids

    async def fire_and_send(self, reminder: str) -> dict[str, int]:
        """Fire an alert to everyone and mark every delivery sent; email -> delivery id."""
        fired = await self.ledger.fire_alert(Alert("vote", reminder), EVERYONE, now=self.clock())
        async with self.db.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(deliveries.c.id, deliveries.c.subscriber_id).where(
                        deliveries.c.alert_id == fired.alert_id
                    )
                )
            ).all()
            for row in rows:
                await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == row.id)
                    .values(
                        status="sent",
                        message_id=f"<{reminder}.{row.id}@example.org>",
                        sent_at=self.clock(),
                    )
                )
        out = {}
        for row in rows:
            subscriber = await self.store.get(row.subscriber_id)
            assert subscriber is not None
            out[subscriber.email] = row.id
        return out

    async def read(self) -> ReadSummary:
        return await read_bounces_once(self.db, self.settings, clock=self.clock)

    async def status(self, email: str) -> SubscriberStatus:
        subscriber = await self.store.get_by_email(email)
        assert subscriber is not None
        return subscriber.status

    async def delivery(self, delivery_id: int) -> tuple[str, str | None]:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(deliveries.c.status, deliveries.c.last_error).where(
                        deliveries.c.id == delivery_id
                    )
                )
            ).one()
        return row.status, row.last_error


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
def rig(db: Database, tmp_path: Path) -> MakeRig:
    async def make(**bounces: object) -> Rig:
        maildir = tmp_path / "bounces"
        settings = Settings(
            secret_key=SECRET,
            bounce_address=BOUNCES,
            bounces=BounceSettings(maildir=maildir, **bounces),  # type: ignore[arg-type]
        )
        deliver(maildir, sample("vacation.eml"))  # the mailbox is never only bounces
        return Rig(db, SubscriberStore(db), Ledger(db, owner="t"), FakeClock(T0), maildir, settings)

    return make


def hard(delivery_id: int, email: str) -> bytes:
    to = return_path(BOUNCES, KEY, delivery_id)
    return dsn(to, [(email, "failed", "5.1.1", "smtp; 550 5.1.1 user unknown")])


async def test_hard_bounces_suppress_after_the_limit_and_open_work_is_skipped(
    rig: MakeRig,
) -> None:
    r = await rig(hard_limit=2)
    await r.add("dead@example.net", "ok@example.net")
    first = await r.fire_and_send("7d")
    deliver(r.maildir, hard(first["dead@example.net"], "dead@example.net"))
    summary = await r.read()
    assert (summary.messages, summary.actions) == (2, {"counted": 1, "ignored": 1})
    assert await r.status("dead@example.net") is SubscriberStatus.ACTIVE
    assert await r.delivery(first["dead@example.net"]) == (
        "bounced",
        "5.1.1 550 5.1.1 user unknown",
    )
    # a pending delivery is waiting when the second bounce arrives
    second = await r.fire_and_send("3d")
    pending = await r.ledger.fire_alert(Alert("vote", "1d"), EVERYONE, now=r.clock())
    deliver(r.maildir, hard(second["dead@example.net"], "dead@example.net"))
    assert (await r.read()).actions == {"suppressed": 1}
    assert await r.status("dead@example.net") is SubscriberStatus.BOUNCED
    assert await r.ledger.alert_counts(pending.alert_id) == {"pending": 1, "skipped": 1}
    summary_rows = (await r.ledger.status_summary(now=r.clock())).alerts
    assert [(a.reminder, a.sent, a.bounced) for a in summary_rows][:2] == [
        ("7d", 1, 1),
        ("3d", 1, 1),
    ]


async def test_a_message_read_twice_counts_once(rig: MakeRig) -> None:
    r = await rig(hard_limit=2)
    await r.add("dead@example.net")
    sent = await r.fire_and_send("7d")
    name = deliver(r.maildir, hard(sent["dead@example.net"], "dead@example.net"))
    await r.read()
    # a crash after recording but before the move: the message is back in new/
    [done] = (r.maildir / "cur").glob(f"{name}:2,*")
    done.rename(r.maildir / "new" / name)
    summary = await r.read()
    assert summary.actions == {"duplicate": 1}
    subscriber = await r.store.get_by_email("dead@example.net")
    assert subscriber is not None and subscriber.hard_bounces == 1


async def test_a_second_report_for_the_same_delivery_counts_once(rig: MakeRig) -> None:
    r = await rig(hard_limit=2)
    await r.add("dead@example.net")
    sent = await r.fire_and_send("7d")
    deliver(r.maildir, hard(sent["dead@example.net"], "dead@example.net"))
    deliver(r.maildir, hard(sent["dead@example.net"], "dead@example.net"))  # a second DSN
    assert (await r.read()).actions == {"counted": 1, "already recorded": 1, "ignored": 1}
    assert await r.status("dead@example.net") is SubscriberStatus.ACTIVE


async def test_without_a_tag_the_message_id_finds_the_delivery(rig: MakeRig) -> None:
    r = await rig(hard_limit=1)
    await r.add("dead@example.net", "ok@example.net")
    sent = await r.fire_and_send("7d")
    delivery_id = sent["dead@example.net"]
    data = dsn(
        BOUNCES,
        [("dead@example.net", "failed", "5.1.1", "smtp; 550 no")],
        message_id=f"<7d.{delivery_id}@example.org>",
    )
    deliver(r.maildir, data)
    assert (await r.read()).actions["suppressed"] == 1
    assert (await r.delivery(delivery_id))[0] == "bounced"
    assert await r.status("ok@example.net") is SubscriberStatus.ACTIVE


async def test_a_forged_tag_changes_nothing(rig: MakeRig) -> None:
    r = await rig(hard_limit=1)
    await r.add("victim@example.net")
    sent = await r.fire_and_send("7d")
    forged = return_path(BOUNCES, derive_key("attacker" * 5), sent["victim@example.net"])
    deliver(
        r.maildir,
        dsn(forged, [("x@evil.example", "failed", "5.1.1", "smtp; 550")], message_id=None),
    )
    assert (await r.read()).actions == {"unmatched": 1, "ignored": 1}
    assert await r.status("victim@example.net") is SubscriberStatus.ACTIVE
    assert (await r.delivery(sent["victim@example.net"]))[0] == "sent"


async def test_soft_bounces_suppress_only_after_n_in_m_days(rig: MakeRig) -> None:
    r = await rig(soft_limit=2, soft_days=7)
    await r.add("full@example.net")

    async def soft(reminder: str) -> str:
        sent = await r.fire_and_send(reminder)
        to = return_path(BOUNCES, KEY, sent["full@example.net"])
        deliver(r.maildir, dsn(to, [("full@example.net", "failed", "5.2.2", "smtp; 552 full")]))
        actions = (await r.read()).actions
        return next(a for a in actions if a != "ignored")

    assert await soft("7d") == "counted"
    r.clock.advance(days=8)  # the first one is outside the window now
    assert await soft("3d") == "counted"
    r.clock.advance(days=1)
    assert await soft("1d") == "suppressed"
    assert await r.status("full@example.net") is SubscriberStatus.BOUNCED


async def test_a_complaint_unsubscribes_at_once_and_an_import_never_reactivates(
    rig: MakeRig,
) -> None:
    r = await rig()
    await r.add("complainer@example.net", "ok@example.net")
    sent = await r.fire_and_send("7d")
    delivery_id = sent["complainer@example.net"]
    to = return_path(BOUNCES, KEY, delivery_id)
    deliver(r.maildir, sample("arf-abuse.eml", **{"bounces+TAG@example.org": to, "MSGID": "<x@y>"}))
    assert (await r.read()).actions == {"unsubscribed": 1, "ignored": 1}
    assert await r.status("complainer@example.net") is SubscriberStatus.COMPLAINED
    assert (await r.delivery(delivery_id))[0] == "complained"
    async with r.db.engine.connect() as conn:
        reason = (
            await conn.execute(
                select(bounce_reports.c.diagnostic, bounce_reports.c.action).where(
                    bounce_reports.c.kind == "complaint"
                )
            )
        ).one()
    assert tuple(reason) == ("feedback report: abuse", "unsubscribed")
    # a re-import with the same address changes nothing, and no further alert goes to it
    again = SubscriberInput.create(
        "complainer@example.net", name="New", locale="fi", timezone="UTC"
    )
    counts = await r.store.upsert_many([again], now=r.clock(), source="import")
    assert (counts.added, counts.updated, counts.unchanged) == (0, 0, 1)
    assert await r.status("complainer@example.net") is SubscriberStatus.COMPLAINED
    listed = await r.store.list_subscribers(status=SubscriberStatus.COMPLAINED)
    assert [s.email for s in listed] == ["complainer@example.net"]
    fired = await r.ledger.fire_alert(Alert("vote", "1d"), EVERYONE, now=r.clock())
    assert fired.deliveries == 1


async def test_one_reader_at_a_time(rig: MakeRig) -> None:
    r = await rig()
    async with reader_lock(r.db) as got:  # another process is reading
        assert got
        summary = await r.read()
        # PostgreSQL: an advisory lock keeps the second reader out; SQLite has one process
        assert summary.locked_out is r.db.is_postgres
        assert summary.messages == (0 if r.db.is_postgres else 1)
    assert (await r.read()).messages == (1 if r.db.is_postgres else 0)


async def test_removing_a_subscriber_erases_their_bounce_reports(rig: MakeRig) -> None:
    r = await rig(hard_limit=1)
    await r.add("dead@example.net", "ok@example.net")
    sent = await r.fire_and_send("7d")
    deliver(r.maildir, hard(sent["dead@example.net"], "dead@example.net"))
    await r.read()
    assert await r.store.remove("dead@example.net")
    async with r.db.engine.connect() as conn:
        emails = list((await conn.execute(select(bounce_reports.c.email))).scalars())
    assert emails == [None]  # the auto-reply's report names no subscriber
