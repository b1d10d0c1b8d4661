"""Read-only queries behind the dashboard: one alert's deliveries and failures, the
subscriber breakdowns and growth, search. Nothing here writes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from campaignbot.campaign.model import Audience
from campaignbot.storage.database import Database
from campaignbot.storage.tables import alerts, deliveries, subscribers
from campaignbot.subscribers.model import decode_list
from campaignbot.subscribers.store import audience_clause

#: delivery states shown as failures, with the last SMTP reply
FAILURE_STATES = ("failed", "bounced", "complained", "retry", "uncertain")


@dataclass(frozen=True)
class Failure:
    email: str
    status: str
    code: int | None
    reason: str
    attempts: int
    updated_at: datetime


@dataclass(frozen=True)
class AlertDetail:
    key: str
    event_id: str
    reminder: str
    kind: str
    status: str
    due: datetime
    fired_at: datetime
    counts: dict[str, int]
    failures: list[Failure]
    #: messages per minute over the last 10 minutes (throughput while sending)
    rate_per_min: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def alert_detail(
    db: Database, key: str, *, now: datetime, limit: int = 200
) -> AlertDetail | None:
    """One ledger alert by key (`event:reminder`), with counts by state and failures."""
    d = deliveries.c
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(alerts).where(alerts.c.key == key))).mappings().first()
        if row is None:
            return None
        counts = {
            str(s): int(n)
            for s, n in await conn.execute(
                select(d.status, func.count()).where(d.alert_id == row["id"]).group_by(d.status)
            )
        }
        failed = await conn.execute(
            select(
                subscribers.c.email, d.status, d.last_code, d.last_error, d.attempts, d.updated_at
            )
            .select_from(deliveries.join(subscribers, subscribers.c.id == d.subscriber_id))
            .where(d.alert_id == row["id"], d.status.in_(FAILURE_STATES))
            .order_by(d.updated_at.desc(), d.id)
            .limit(limit)
        )
        failures = [
            Failure(str(e), str(s), c, str(r or ""), int(a), u) for e, s, c, r, a, u in failed
        ]
        recent = (
            await conn.execute(
                select(func.count()).where(
                    d.alert_id == row["id"],
                    d.sent_at.is_not(None),
                    d.sent_at >= now - timedelta(minutes=10),
                )
            )
        ).scalar_one()
    return AlertDetail(
        key=row["key"],
        event_id=row["event_id"],
        reminder=row["reminder"],
        kind=row["kind"],
        status=row["status"],
        due=row["due_at"],
        fired_at=row["fired_at"],
        counts=counts,
        failures=failures,
        rate_per_min=round(int(recent) / 10, 1),
    )


async def audience_by_locale(db: Database, audience: Audience) -> dict[str, int]:
    """Active subscribers an event with `audience` reaches, by locale."""
    query = (
        select(subscribers.c.locale, func.count())
        .where(audience_clause(audience))
        .group_by(subscribers.c.locale)
        .order_by(subscribers.c.locale)
    )
    async with db.engine.connect() as conn:
        return {str(loc): int(n) for loc, n in await conn.execute(query)}


@dataclass(frozen=True)
class Breakdown:
    status: dict[str, int]
    locale: dict[str, int]
    country: dict[str, int]
    topic: dict[str, int]
    everything: int


def _sorted(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


async def breakdown(db: Database) -> Breakdown:
    """Subscribers by status, and active ones by locale, country and topic."""
    s = subscribers.c
    async with db.engine.connect() as conn:
        status = Counter(
            {
                str(k): int(n)
                for k, n in await conn.execute(select(s.status, func.count()).group_by(s.status))
            }
        )
        active = s.status == "active"
        # group by the stored list first, so only distinct lists travel to Python
        rows = await conn.execute(
            select(s.locale, s.countries, s.topics, s.follows_all, func.count())
            .where(active)
            .group_by(s.locale, s.countries, s.topics, s.follows_all)
        )
        locale: Counter[str] = Counter()
        country: Counter[str] = Counter()
        topic: Counter[str] = Counter()
        everything = 0
        for loc, countries, topics, follows_all, n in rows:
            locale[str(loc)] += int(n)
            for c in decode_list(countries):
                country[c] += int(n)
            for t in decode_list(topics):
                topic[t] += int(n)
            everything += int(n) if follows_all else 0
    return Breakdown(_sorted(status), _sorted(locale), _sorted(country), _sorted(topic), everything)


async def growth(db: Database, *, now: datetime, days: int = 90) -> list[tuple[date, int, int]]:
    """Per day of the last `days` (UTC): sign-ups that day and the list's size at its end.

    The size counts the subscribers stored now (any status) by when they were added;
    addresses erased since are not counted on any day.
    """
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    s = subscribers.c
    async with db.engine.connect() as conn:
        before = (await conn.execute(select(func.count()).where(s.created_at < start))).scalar_one()
        created = [
            c for (c,) in await conn.execute(select(s.created_at).where(s.created_at >= start))
        ]
    per_day = Counter(c.date() for c in created)
    total = int(before)
    series = []
    for i in range(days):
        day = (start + timedelta(days=i)).date()
        total += per_day.get(day, 0)
        series.append((day, per_day.get(day, 0), total))
    return series


async def search_addresses(db: Database, text: str, *, limit: int = 50) -> list[str]:
    """Addresses containing `text` (case-insensitive), at most `limit`."""
    needle = text.strip().lower()
    if not needle:
        return []
    query = (
        select(subscribers.c.email)
        .where(subscribers.c.email_key.contains(needle, autoescape=True))
        .order_by(subscribers.c.email_key)
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        return [str(e) for (e,) in await conn.execute(query)]
