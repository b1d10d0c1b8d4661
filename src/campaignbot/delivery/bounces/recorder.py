"""Record bounce and complaint reports: the delivery's final state, the subscriber's fate.

One transaction per mailbox message or webhook call. The report's unique key is inserted
first, so a message read twice (a restart mid-batch) or an event replayed changes
nothing the second time. A delivery becomes `bounced` (or `complained`) after `sent`;
the states stay exclusive, so it leaves the `sent` count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from campaignbot.delivery.bounces.verp import verify_tag
from campaignbot.email.reports import BounceReport, ReportKind, bare_message_id
from campaignbot.storage.database import Database
from campaignbot.storage.states import DUE_STATUSES, DeliveryStatus
from campaignbot.storage.tables import bounce_reports, deliveries, subscribers
from campaignbot.subscribers.model import email_key

logger = logging.getLogger(__name__)

#: delivery states a later report may replace (a refused-in-session `failed` stays)
_REPLACEABLE = (
    DeliveryStatus.SENT,
    DeliveryStatus.UNCERTAIN,
    DeliveryStatus.SENDING,
    DeliveryStatus.RETRY,
)
#: open deliveries of a suppressed address are skipped (a `sending` one is left to its
#: owner, whose opt-out check right before sending skips it)
_OPEN = DUE_STATUSES
#: subscriber statuses a bounce may change (unsubscribed and removed stay as they are)
_LIVE = ("active", "pending")


@dataclass(frozen=True)
class BounceRules:
    """When bounces suppress an address (settings.bounces)."""

    hard_limit: int = 3
    soft_limit: int = 5
    soft_days: int = 14


@dataclass(frozen=True)
class Recorded:
    """What recording one report did."""

    report: BounceReport
    action: str  # suppressed|unsubscribed|counted|already recorded|unmatched|ignored|duplicate
    delivery_id: int | None = None
    subscriber_id: int | None = None


class BounceRecorder:
    """Writes reports and their consequences; `verp_key` checks the tags."""

    def __init__(self, db: Database, *, verp_key: bytes | None, rules: BounceRules) -> None:
        self.db = db
        self._verp_key = verp_key
        self._rules = rules

    async def record(self, reports: Sequence[BounceReport], *, now: datetime) -> list[Recorded]:
        """Record the reports of one message or one webhook call in one transaction."""
        async with self.db.engine.begin() as conn:
            return [await self._record_one(conn, report, now) for report in reports]

    async def seen(self, key_prefix: str) -> bool:
        """Whether a report with this key (the message's first report) was recorded."""
        query = select(bounce_reports.c.id).where(bounce_reports.c.key == f"{key_prefix}#0")
        async with self.db.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def _insert(self, conn: AsyncConnection, values: dict[str, Any]) -> int | None:
        insert: Any = (postgresql.insert if self.db.is_postgres else sqlite.insert)(bounce_reports)
        stmt = insert.values(**values).on_conflict_do_nothing(index_elements=["key"])
        result = await conn.execute(stmt.returning(bounce_reports.c.id))
        row = result.first()
        return int(row[0]) if row else None

    async def _record_one(
        self, conn: AsyncConnection, report: BounceReport, now: datetime
    ) -> Recorded:
        report_id = await self._insert(
            conn,
            {
                "key": report.key[:300],
                "source": report.source[:32],
                "kind": report.kind.value,
                "email": (report.email or "")[:320] or None,
                "status_code": report.status,
                "smtp_code": report.smtp_code,
                "diagnostic": report.diagnostic[:1000],
                "action": "pending",
                "received_at": now,
            },
        )
        if report_id is None:
            return Recorded(report, "duplicate")
        if report.kind is ReportKind.OTHER:
            result = Recorded(report, "ignored")
        else:
            delivery_id, subscriber_id = await self._match(conn, report)
            if subscriber_id is None:
                result = Recorded(report, "unmatched", delivery_id)
            else:
                action = await self._apply(conn, report, delivery_id, subscriber_id, now)
                result = Recorded(report, action, delivery_id, subscriber_id)
        await conn.execute(
            update(bounce_reports)
            .where(bounce_reports.c.id == report_id)
            .values(
                action=result.action,
                delivery_id=result.delivery_id,
                subscriber_id=result.subscriber_id,
            )
        )
        logger.info(
            "%s: %s %s %s (%s): %s",
            report.source,
            report.kind.value,
            report.email or "?",
            report.status or report.smtp_code or "",
            report.diagnostic[:120],
            result.action,
            extra={
                "action": "bounce_recorded",
                "kind": report.kind.value,
                "outcome": result.action,
                "delivery": result.delivery_id,
                "subscriber": result.subscriber_id,
            },
        )
        return result

    async def _match(
        self, conn: AsyncConnection, report: BounceReport
    ) -> tuple[int | None, int | None]:
        """The delivery (VERP tag, else Message-ID) and the subscriber (else by address)."""
        d = deliveries.c
        candidates = []
        if report.tag and self._verp_key is not None:
            delivery_id = verify_tag(self._verp_key, report.tag)
            if delivery_id is not None:
                candidates.append(d.id == delivery_id)
            else:
                logger.warning("%s: forged or foreign VERP tag %r", report.key, report.tag)
        message_id = bare_message_id(report.message_id)
        if not candidates and message_id:
            candidates.append(d.message_id.in_((f"<{message_id}>", message_id)))
        for condition in candidates:
            row = (await conn.execute(select(d.id, d.subscriber_id).where(condition))).first()
            if row is not None:
                return int(row.id), int(row.subscriber_id)
        if not report.email:
            return None, None
        # no tag, no Message-ID (relays' webhooks, non-standard bounces): the address's
        # latest delivery that went out
        query = (
            select(subscribers.c.id, d.id.label("delivery_id"))
            .select_from(
                subscribers.outerjoin(
                    deliveries, and_(d.subscriber_id == subscribers.c.id, d.sent_at.is_not(None))
                )
            )
            .where(subscribers.c.email_key == email_key(report.email))
            .order_by(d.sent_at.desc())
            .limit(1)
        )
        found = (await conn.execute(query)).first()
        if found is None:
            return None, None
        return (int(found.delivery_id) if found.delivery_id else None), int(found.id)

    async def _apply(
        self,
        conn: AsyncConnection,
        report: BounceReport,
        delivery_id: int | None,
        subscriber_id: int,
        now: datetime,
    ) -> str:
        complaint = report.kind is ReportKind.COMPLAINT
        first = True
        if delivery_id is not None:
            state = DeliveryStatus.COMPLAINED if complaint else DeliveryStatus.BOUNCED
            # a second report about the same delivery (mailbox and webhook) counts once
            replaceable = (*_REPLACEABLE, DeliveryStatus.BOUNCED) if complaint else _REPLACEABLE
            changed = await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.status.in_(replaceable))
                .values(
                    status=state,
                    last_code=report.smtp_code,
                    last_error=" ".join(filter(None, [report.status, report.diagnostic]))[:1000],
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            first = changed.rowcount == 1
        if complaint:
            done = await self._suppress(conn, subscriber_id, "complained", now)
            return "unsubscribed" if done else "already recorded"
        if not first:
            return "already recorded"
        if report.kind is ReportKind.HARD:
            await conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(hard_bounces=subscribers.c.hard_bounces + 1, updated_at=now)
            )
            count = (
                await conn.execute(
                    select(subscribers.c.hard_bounces).where(subscribers.c.id == subscriber_id)
                )
            ).scalar_one()
            over = int(count) >= self._rules.hard_limit
        else:
            since = now - timedelta(days=self._rules.soft_days)
            count = (
                await conn.execute(
                    select(func.count())
                    .select_from(bounce_reports)
                    .where(
                        bounce_reports.c.subscriber_id == subscriber_id,
                        bounce_reports.c.kind == ReportKind.SOFT.value,
                        bounce_reports.c.received_at > since,
                        bounce_reports.c.action.in_(("counted", "suppressed")),
                    )
                )
            ).scalar_one()
            over = int(count) + 1 >= self._rules.soft_limit  # this report is not counted yet
        if over and await self._suppress(conn, subscriber_id, "bounced", now):
            return "suppressed"
        return "counted"

    async def _suppress(
        self, conn: AsyncConnection, subscriber_id: int, status: str, now: datetime
    ) -> bool:
        """Set the status (bounced/complained) and skip the address's open deliveries."""
        live: ColumnElement[bool] = subscribers.c.status.in_(_LIVE)
        if status == "complained":  # a complaint also overrides an earlier bounce
            live = or_(live, subscribers.c.status == "bounced")
        changed = await conn.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id, live)
            .values(status=status, updated_at=now)
        )
        if changed.rowcount != 1:
            return False
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.status.in_(_OPEN))
            .values(
                status=DeliveryStatus.SKIPPED, last_error=f"subscriber {status}", updated_at=now
            )
        )
        logger.info(
            "subscriber %d: %s",
            subscriber_id,
            "unsubscribed after a complaint" if status == "complained" else "suppressed (bounces)",
            extra={"action": f"subscriber_{status}", "subscriber": subscriber_id},
        )
        return True


@dataclass(frozen=True)
class ReportRow:
    """One stored report, as `campaignbot bounces` lists it."""

    received_at: datetime
    source: str
    kind: str
    email: str | None
    status_code: str | None
    smtp_code: int | None
    diagnostic: str
    action: str
    delivery_id: int | None
    subscriber_id: int | None


async def recent_reports(
    db: Database, *, limit: int = 50, include_other: bool = False
) -> list[ReportRow]:
    """The newest reports first; messages that were not bounces only with `include_other`."""
    r = bounce_reports.c
    query = select(
        r.received_at,
        r.source,
        r.kind,
        r.email,
        r.status_code,
        r.smtp_code,
        r.diagnostic,
        r.action,
        r.delivery_id,
        r.subscriber_id,
    )
    if not include_other:
        query = query.where(r.kind != ReportKind.OTHER.value)
    query = query.order_by(r.received_at.desc(), r.id.desc()).limit(limit)
    async with db.engine.connect() as conn:
        return [ReportRow(**row._mapping) for row in (await conn.execute(query)).all()]
