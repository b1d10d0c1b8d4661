"""The delivery ledger on real SQLite and PostgreSQL: firing, claiming, leases, outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from campaignbot.delivery.ledger import Failed, Ledger, Retry, Sent, Skipped, Uncertain
from campaignbot.storage.database import Database
from campaignbot.storage.tables import deliveries, subscribers

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
EVERYONE = subscribers.c.id > 0

AddSubscribers = Callable[..., Awaitable[list[int]]]


@dataclass(frozen=True)
class Alert:
    event_id: str
    reminder: str
    due_utc: datetime = T0

    @property
    def key(self) -> str:
        return f"{self.event_id}:{self.reminder}"


async def insert_subscribers(
    db: Database, n: int, *, status: str = "active", prefix: str = "s", countries: str = ""
) -> list[int]:
    """Subscriber rows straight into the table (fixtures need no store)."""
    rows: list[dict[str, Any]] = [
        {
            "email": f"{prefix}{i}@example.org",
            "email_key": f"{prefix}{i}@example.org",
            "name": f"Subscriber {i}",
            "locale": "en",
            "timezone": "Europe/Helsinki",
            "countries": countries,
            "topics": "",
            "follows_all": False,
            "status": status,
            "hard_bounces": 0,
            "created_at": T0,
            "updated_at": T0,
        }
        for i in range(n)
    ]
    async with db.engine.begin() as conn:
        await conn.execute(insert(subscribers), rows)
        found = await conn.execute(
            select(subscribers.c.id)
            .where(subscribers.c.email.like(f"{prefix}%"))
            .order_by(subscribers.c.id)
        )
        return list(found.scalars())


@pytest.fixture
def add_subscribers(db: Database) -> AddSubscribers:
    async def add(n: int, **options: Any) -> list[int]:
        return await insert_subscribers(db, n, **options)

    return add


async def delivery_rows(db: Database) -> list[Any]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(select(deliveries).order_by(deliveries.c.id))).all())


async def test_firing_writes_one_pending_delivery_per_matching_active_subscriber(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(3, prefix="fi", countries=";FI;")
    await add_subscribers(2, prefix="pl", countries=";PL;")
    await add_subscribers(1, prefix="gone", countries=";FI;", status="unsubscribed")
    ledger = Ledger(db, owner="a")
    result = await ledger.fire_alert(
        Alert("fi-vote", "1d"), subscribers.c.countries.like("%;FI;%"), now=T0
    )
    assert result.created and result.deliveries == 3
    rows = await delivery_rows(db)
    assert [r.status for r in rows] == ["pending"] * 3
    assert all(r.next_attempt_at == T0 and r.attempts == 0 for r in rows)


async def test_firing_the_same_alert_twice_adds_nothing(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(4)
    ledger = Ledger(db, owner="a")
    first = await ledger.fire_alert(Alert("e", "0"), EVERYONE, now=T0)
    await add_subscribers(2, prefix="late")
    again = await ledger.fire_alert(Alert("e", "0"), EVERYONE, now=T0 + timedelta(minutes=1))
    assert (first.created, again.created) == (True, False)
    assert again.alert_id == first.alert_id and again.deliveries == 4
    assert len(await delivery_rows(db)) == 4


async def test_concurrent_firing_of_one_alert_creates_it_once(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(50)
    ledgers = [Ledger(db, owner=f"p{i}") for i in range(4)]
    results = await asyncio.gather(
        *(ledger.fire_alert(Alert("e", "0"), EVERYONE, now=T0) for ledger in ledgers)
    )
    assert sum(r.created for r in results) == 1
    assert len(await delivery_rows(db)) == 50


async def test_skipped_alert_is_recorded_without_deliveries(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(2)
    ledger = Ledger(db, owner="a")
    skipped = await ledger.skip_alert(Alert("e", "7d"), now=T0, reason="missed")
    fired = await ledger.fire_alert(Alert("e", "7d"), EVERYONE, now=T0)
    assert skipped.created and not fired.created and fired.deliveries == 0
    summary = await ledger.status_summary(now=T0)
    assert [(a.key, a.status, a.sent, a.pending) for a in summary.alerts] == [
        ("e:7d", "skipped", 0, 0)
    ]


async def test_claim_leases_due_work_and_returns_what_rendering_needs(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    ids = await add_subscribers(3)
    ledger = Ledger(db, owner="a")
    await ledger.fire_alert(Alert("e", "1d"), EVERYONE, now=T0)
    assert await ledger.claim(10, now=T0 - timedelta(seconds=1), lease_s=60) == []
    claims = await ledger.claim(2, now=T0, lease_s=60)
    assert len(claims) == 2
    claim = claims[0]
    assert (claim.alert_key, claim.event_id, claim.reminder, claim.kind) == (
        "e:1d",
        "e",
        "1d",
        "alert",
    )
    assert claim.subscriber_id in ids and claim.email.endswith("@example.org")
    assert (claim.attempts, claim.locale, claim.subscriber_status) == (1, "en", "active")
    rest = await ledger.claim(10, now=T0, lease_s=60)
    assert len(rest) == 1
    assert await ledger.claim(10, now=T0, lease_s=60) == []
    rows = await delivery_rows(db)
    assert {(r.status, r.lease_owner) for r in rows} == {("sending", "a")}
    assert rows[0].lease_expires_at == T0 + timedelta(seconds=60)


async def test_two_owners_claiming_concurrently_never_share_a_delivery(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(400)
    a, b = Ledger(db, owner="a"), Ledger(db, owner="b")
    await a.fire_alert(Alert("e", "0"), EVERYONE, now=T0)

    async def drain(ledger: Ledger) -> list[int]:
        got: list[int] = []
        while claims := await ledger.claim(25, now=T0, lease_s=60):
            got += [c.delivery_id for c in claims]
            await asyncio.sleep(0)
        return got

    got_a, got_b = await asyncio.gather(drain(a), drain(b))
    assert not set(got_a) & set(got_b)
    assert len(got_a) + len(got_b) == 400
    rows = await delivery_rows(db)
    assert all(r.attempts == 1 for r in rows)


async def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_record(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(1)
    crashed, rescuer = Ledger(db, owner="crashed"), Ledger(db, owner="rescuer")
    await crashed.fire_alert(Alert("e", "0"), EVERYONE, now=T0)
    [claim] = await crashed.claim(10, now=T0, lease_s=30)
    assert await rescuer.claim(10, now=T0 + timedelta(seconds=29), lease_s=30) == []
    [taken] = await rescuer.claim(10, now=T0 + timedelta(seconds=30), lease_s=30)
    assert taken.delivery_id == claim.delivery_id and taken.attempts == 2
    late = T0 + timedelta(seconds=31)
    assert await crashed.record([Failed(claim.delivery_id, 451, "late")], now=late) == 0
    assert await rescuer.record([Sent(taken.delivery_id, "<m@x>", "250 OK")], now=late) == 1
    [row] = await delivery_rows(db)
    assert (row.status, row.message_id, row.last_code, row.lease_owner) == (
        "sent",
        "<m@x>",
        250,
        None,
    )
    assert row.sent_at == late


async def test_outcomes_are_recorded_in_one_batch(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(5)
    ledger = Ledger(db, owner="a")
    await ledger.fire_alert(Alert("e", "0"), EVERYONE, now=T0)
    c = await ledger.claim(10, now=T0, lease_s=60)
    later = T0 + timedelta(minutes=1)
    changed = await ledger.record(
        [
            Sent(c[0].delivery_id, "<a@x>", "250 ok"),
            Retry(c[1].delivery_id, 451, "try later", later),
            Uncertain(c[2].delivery_id, "timeout after data", later),
            Failed(c[3].delivery_id, 554, "rejected"),
            Skipped(c[4].delivery_id, "unsubscribed"),
        ],
        now=T0,
    )
    assert changed == 5
    rows = await delivery_rows(db)
    assert [r.status for r in rows] == ["sent", "retry", "uncertain", "failed", "skipped"]
    assert rows[2].was_uncertain and rows[1].next_attempt_at == later
    summary = await ledger.status_summary(now=later)
    [line] = summary.alerts
    counts = (line.sent, line.pending, line.retry, line.failed, line.uncertain, line.skipped)
    assert counts == (1, 0, 1, 1, 1, 1)
    assert summary.oldest_pending_age_s == 60.0
    assert await ledger.next_due() == later
    # retry and uncertain come back when due; the uncertain one keeps its flag
    again = await ledger.claim(10, now=later, lease_s=60)
    assert sorted(x.delivery_id for x in again) == [c[1].delivery_id, c[2].delivery_id]
    assert [x.was_uncertain for x in sorted(again, key=lambda x: x.delivery_id)] == [False, True]


async def test_three_hard_bounces_suppress_the_address_and_skip_its_pending_work(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    [sid] = await add_subscribers(1)
    ledger = Ledger(db, owner="a")
    for n in range(3):
        await ledger.fire_alert(Alert("e", f"{n + 1}d"), EVERYONE, now=T0)
    await ledger.fire_alert(Alert("e", "0"), EVERYONE, now=T0 + timedelta(hours=1))
    for _ in range(3):
        [claim] = await ledger.claim(1, now=T0, lease_s=60)
        await ledger.record([Failed(claim.delivery_id, 550, "550 5.1.1 no such user", sid)], now=T0)
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(subscribers).where(subscribers.c.id == sid))).one()
    assert (row.status, row.hard_bounces) == ("bounced", 3)
    rows = await delivery_rows(db)
    assert [r.status for r in rows] == ["failed", "failed", "failed", "skipped"]
    assert await ledger.claim(10, now=T0 + timedelta(hours=2), lease_s=60) == []


async def test_release_returns_this_owners_work_without_counting_the_attempt(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    await add_subscribers(3)
    a, b = Ledger(db, owner="a"), Ledger(db, owner="b")
    await a.fire_alert(Alert("e", "0"), EVERYONE, now=T0)
    await a.claim(2, now=T0, lease_s=60)
    await b.claim(2, now=T0, lease_s=60)
    assert await a.release(now=T0 + timedelta(seconds=5)) == 2
    rows = await delivery_rows(db)
    assert sorted((r.status, r.attempts, r.lease_owner) for r in rows) == [
        ("pending", 0, None),
        ("pending", 0, None),
        ("sending", 1, "b"),
    ]
    assert len(await b.claim(10, now=T0 + timedelta(seconds=5), lease_s=60)) == 2


async def test_notice_goes_to_active_subscribers_already_alerted(
    db: Database, add_subscribers: AddSubscribers
) -> None:
    ids = await add_subscribers(4)
    ledger = Ledger(db, owner="a")
    assert not await ledger.event_has_sent("e")
    await ledger.fire_alert(Alert("e", "1d"), EVERYONE, now=T0)
    claims = {c.subscriber_id: c for c in await ledger.claim(10, now=T0, lease_s=60)}
    later = T0 + timedelta(hours=1)
    await ledger.record(
        [
            Sent(claims[ids[0]].delivery_id, "<1@x>"),
            Uncertain(claims[ids[1]].delivery_id, "timeout", later),
            Sent(claims[ids[2]].delivery_id, "<3@x>"),
            Failed(claims[ids[3]].delivery_id, 554, "no"),
        ],
        now=T0,
    )
    async with db.engine.begin() as conn:
        await conn.execute(
            update(subscribers).where(subscribers.c.id == ids[2]).values(status="unsubscribed")
        )
    assert await ledger.event_has_sent("e")
    notice = await ledger.fire_notice("e", change="postponed", sequence=1, now=later)
    again = await ledger.fire_notice("e", change="postponed", sequence=1, now=later)
    assert (notice.created, notice.deliveries, again.created) == (True, 2, False)
    got = await ledger.claim(10, now=later, lease_s=60)
    notices = [c for c in got if c.kind == "notice"]
    assert sorted(c.subscriber_id for c in notices) == [ids[0], ids[1]]
    assert {(c.alert_key, c.change, c.sequence) for c in notices} == {
        ("e:notice:1", "postponed", 1)
    }
