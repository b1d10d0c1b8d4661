"""The delivery ledger: alerts fired, deliveries claimed under a lease, outcomes recorded.

The database decides who sends what (healthchecks' shape): a delivery row exists before
anything is handed to the transport, a sender owns it only after a conditional UPDATE
(`claim`), and every outcome is written only while that sender still holds the lease.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from campaignbot.storage.database import Database
from campaignbot.storage.states import (
    DUE_STATUSES,
    OPEN_STATUSES,
    AlertKind,
    AlertState,
    DeliveryStatus,
)
from campaignbot.storage.tables import alerts, deliveries, event_versions, subscribers
from campaignbot.subscribers.model import SubscriberStatus

logger = logging.getLogger(__name__)

#: a subscriber with this many hard bounces becomes `bounced` and gets nothing more
BOUNCE_LIMIT = 3

DUE = DUE_STATUSES
OPEN = OPEN_STATUSES


class AlertLike(Protocol):
    """What `fire_alert` needs of a planned alert (planning.PlannedAlert fits)."""

    @property
    def event_id(self) -> str: ...
    @property
    def reminder(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def due_utc(self) -> datetime: ...


@dataclass(frozen=True)
class FireResult:
    alert_id: int
    created: bool  # False: the key existed, nothing was added
    deliveries: int  # deliveries of this alert (all of them, not only new ones)


@dataclass(frozen=True)
class Claim:
    """One delivery claimed by this sender, with everything rendering needs."""

    delivery_id: int
    attempts: int  # including the one now starting
    created_at: datetime
    was_uncertain: bool
    #: an earlier attempt failed (retry or uncertain); False for a first attempt, also
    #: one taken over from a crashed sender (its claim counted an attempt it never made)
    failed_before: bool
    alert_id: int
    alert_key: str
    event_id: str
    reminder: str
    kind: str  # alert | notice
    change: str | None
    previous_when: datetime | date | None  # notices: the event's date before the change
    sequence: int  # the event's iCalendar SEQUENCE (notices: the one they announce)
    subscriber_id: int
    email: str
    name: str
    locale: str
    timezone: str
    subscriber_status: str
    link_nonce: str = ""  # signed into the links of the message


@dataclass(frozen=True)
class Sent:
    delivery_id: int
    message_id: str | None
    reply: str = ""


@dataclass(frozen=True)
class Retry:
    delivery_id: int
    code: int | None
    error: str
    next_attempt_at: datetime


@dataclass(frozen=True)
class Uncertain:
    delivery_id: int
    error: str
    next_attempt_at: datetime


@dataclass(frozen=True)
class Failed:
    delivery_id: int
    code: int | None
    error: str
    #: a permanent rejection of the address: counts towards suppression
    hard_bounce_subscriber: int | None = None


@dataclass(frozen=True)
class Skipped:
    delivery_id: int
    reason: str


Outcome = Sent | Retry | Uncertain | Failed | Skipped


@dataclass(frozen=True)
class AlertStatus:
    """One alert's line in `campaignbot status`."""

    key: str
    event: str
    reminder: str
    kind: str
    due: datetime
    fired_at: datetime
    status: str  # fired | skipped
    sent: int
    pending: int  # pending + sending
    retry: int
    failed: int
    uncertain: int  # deliveries that were uncertain at some point
    skipped: int
    bounced: int = 0  # accepted, bounced later (no longer counted as sent)
    complained: int = 0  # accepted, reported as spam later
    stale: int = 0  # of the skipped: because the event had started
    #: a skipped alert: why (stale, missed, superseded); None for older rows
    skip_reason: str | None = None

    @property
    def open(self) -> int:
        return self.pending + self.retry


@dataclass(frozen=True)
class LedgerCounts:
    """The shared counts `/metrics` exposes (every process reads the same truth)."""

    deliveries: dict[str, int]
    #: due now and not yet sent (pending, retry or uncertain)
    queue_depth: int
    #: deliveries whose outcome was unknown at some point (possible duplicates)
    uncertain: int
    oldest_open_age_s: float | None
    alerts: dict[str, int]
    #: deliveries skipped because their event had started (the stale guard)
    stale: int = 0


@dataclass(frozen=True)
class StatusSummary:
    alerts: list[AlertStatus]
    oldest_pending_age_s: float | None


def _when_from_text(text: str | None) -> datetime | date | None:
    """`alerts.previous_when`: an ISO date, or a date-time with its UTC offset."""
    if text is None:
        return None
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)


def _alert_status(row: Any) -> AlertStatus:
    """One `status_summary` row: seven columns, nine counts, the skip reason."""
    counts = [int(n) for n in row[7:16]]
    sent, pending, retry, failed, uncertain, skipped, bounced, complained, stale = counts
    key, event, reminder, kind, due, fired_at, status = row[:7]
    return AlertStatus(
        key=key,
        event=event,
        reminder=reminder,
        kind=kind,
        due=due,
        fired_at=fired_at,
        status=status,
        sent=sent,
        pending=pending,
        retry=retry,
        failed=failed,
        uncertain=uncertain,
        skipped=skipped,
        bounced=bounced,
        complained=complained,
        stale=stale,
        skip_reason=row[16],
    )


def _reply_code(reply: str) -> int | None:
    head = reply[:3]
    return int(head) if head.isdigit() else None


class Ledger:
    """Alerts and deliveries in the database, as seen by one sender (`owner`)."""

    def __init__(self, db: Database, *, owner: str) -> None:
        self.db = db
        self.owner = owner

    # -- firing ------------------------------------------------------------------

    async def fire_alert(
        self, alert: AlertLike, audience: ColumnElement[bool], *, now: datetime
    ) -> FireResult:
        """Record the alert and one pending delivery per matching active subscriber.

        One transaction; firing the same key again adds nothing (the alert's key is
        unique and the insert does nothing on conflict).
        """
        row = {
            "key": alert.key,
            "event_id": alert.event_id,
            "reminder": alert.reminder,
            "kind": AlertKind.ALERT,
            "change": None,
            "sequence": 0,
            "due_at": alert.due_utc,
        }
        audience = and_(subscribers.c.status == "active", audience)
        return await self._fire(row, audience, now=now)

    async def fire_notice(
        self,
        event_id: str,
        *,
        change: str,
        sequence: int,
        now: datetime,
        previous_when: datetime | date | None = None,
    ) -> FireResult:
        """A notice (rescheduled/postponed/cancelled) to everyone already alerted of the event.

        "Alerted" means a sent or uncertain delivery of one of the event's alerts; the
        subscriber must still be active. Key `event:notice:sequence`, so once per change.
        """
        row = {
            "key": f"{event_id}:notice:{sequence}",
            "event_id": event_id,
            "reminder": AlertKind.NOTICE.value,
            "kind": AlertKind.NOTICE,
            "change": change,
            "previous_when": None if previous_when is None else previous_when.isoformat(),
            "sequence": sequence,
            "due_at": now,
        }
        alerted = (
            select(literal(1))
            .select_from(deliveries.join(alerts, deliveries.c.alert_id == alerts.c.id))
            .where(
                deliveries.c.subscriber_id == subscribers.c.id,
                alerts.c.event_id == event_id,
                alerts.c.kind == AlertKind.ALERT,
                or_(
                    deliveries.c.status.in_((DeliveryStatus.SENT, DeliveryStatus.UNCERTAIN)),
                    deliveries.c.was_uncertain.is_(True),
                ),
            )
        )
        audience = and_(subscribers.c.status == "active", exists(alerted))
        return await self._fire(row, audience, now=now)

    async def skip_alert(
        self, alert: AlertLike, *, now: datetime, reason: str, kind: str | None = None
    ) -> FireResult:
        """Record a missed alert as skipped (no deliveries), so `status` shows it.

        `kind` is the short reason kept in the row (stale, missed, superseded);
        `reason` the sentence logged.
        """
        values = {
            "key": alert.key,
            "event_id": alert.event_id,
            "reminder": alert.reminder,
            "kind": AlertKind.ALERT,
            "sequence": 0,
            "due_at": alert.due_utc,
            "fired_at": now,
            "status": AlertState.SKIPPED,
            "deliveries": 0,
            "skip_reason": kind,
        }
        async with self.db.engine.begin() as conn:
            created = await self._insert_alert(conn, values)
            alert_id, count = await self._alert_row(conn, alert.key)
        if created:  # DEBUG: the service logs one summary line for all it skipped
            logger.debug(
                "%s: skipped: %s",
                alert.key,
                reason,
                extra={"action": "alert_skipped", "alert": alert.key, "reason": reason},
            )
        return FireResult(alert_id, created, count)

    async def skip_stale(
        self, started: Iterable[str], zero_expired: Iterable[str], *, now: datetime
    ) -> int:
        """Open deliveries of events that have started become `skipped` (reason `stale`).

        `started`: events whose start has passed; their pending deliveries of every
        reminder but '0', and every retry or uncertain delivery, go. `zero_expired`:
        events more than `stale_after` past their start; their '0' deliveries go too.
        `sending` rows are their owner's: its own check before sending skips them.
        """
        started, zero_expired = list(started), list(zero_expired)
        if not started and not zero_expired:
            return 0
        d = deliveries.c

        def alert_ids(*where: ColumnElement[bool]) -> Any:
            query = select(alerts.c.id).where(alerts.c.kind == AlertKind.ALERT, *where)
            return query.scalar_subquery()

        stale = or_(
            d.alert_id.in_(alert_ids(alerts.c.event_id.in_(started), alerts.c.reminder != "0")),
            and_(
                d.status != DeliveryStatus.PENDING,  # a retry or uncertain re-send
                d.alert_id.in_(alert_ids(alerts.c.event_id.in_(started))),
            ),
            d.alert_id.in_(alert_ids(alerts.c.event_id.in_(zero_expired))),
        )
        stmt = (
            update(deliveries)
            .where(d.status.in_(DUE), stale)
            .values(status=DeliveryStatus.SKIPPED, last_error="stale", updated_at=now)
        )
        async with self.db.engine.begin() as conn:
            count = (await conn.execute(stmt)).rowcount
        if count:
            logger.info(
                "%d deliveries of events that have started were skipped (stale)",
                count,
                extra={"action": "deliveries_stale", "count": count},
            )
        return count

    async def _fire(
        self, row: dict[str, Any], audience: ColumnElement[bool], *, now: datetime
    ) -> FireResult:
        values = row | {"fired_at": now, "status": AlertState.FIRED, "deliveries": 0}
        async with self.db.engine.begin() as conn:
            # the INSERT comes first: on SQLite it takes the write lock before any read
            created = await self._insert_alert(conn, values)
            alert_id, count = await self._alert_row(conn, row["key"])
            if created:
                chosen = select(
                    literal(alert_id).label("alert_id"),
                    subscribers.c.id,
                    literal(DeliveryStatus.PENDING.value).label("status"),
                    literal(0).label("attempts"),
                    literal(now, deliveries.c.next_attempt_at.type).label("next_attempt_at"),
                    literal(False).label("was_uncertain"),
                    literal(now, deliveries.c.created_at.type).label("created_at"),
                    literal(now, deliveries.c.updated_at.type).label("updated_at"),
                ).where(audience)
                columns = [
                    "alert_id",
                    "subscriber_id",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "was_uncertain",
                    "created_at",
                    "updated_at",
                ]
                result = await conn.execute(deliveries.insert().from_select(columns, chosen))
                count = result.rowcount
                await conn.execute(
                    update(alerts).where(alerts.c.id == alert_id).values(deliveries=count)
                )
        if created:
            logger.info(
                "%s: fired, %d deliveries",
                row["key"],
                count,
                extra={"action": "alert_fired", "alert": row["key"], "deliveries": count},
            )
        return FireResult(alert_id, created, count)

    async def _insert_alert(self, conn: AsyncConnection, values: dict[str, Any]) -> bool:
        if self.db.is_postgres:
            stmt: Any = postgresql.insert(alerts).on_conflict_do_nothing(index_elements=["key"])
        else:
            stmt = sqlite.insert(alerts).on_conflict_do_nothing(index_elements=["key"])
        result = await conn.execute(stmt.values(**values))
        return result.rowcount == 1

    async def _alert_row(self, conn: AsyncConnection, key: str) -> tuple[int, int]:
        row = (
            await conn.execute(select(alerts.c.id, alerts.c.deliveries).where(alerts.c.key == key))
        ).one()
        return int(row.id), int(row.deliveries)

    async def event_has_sent(self, event_id: str) -> bool:
        """Whether any alert of the event reached anyone (sent or possibly sent)."""
        query = select(
            exists(
                select(literal(1))
                .select_from(deliveries.join(alerts, deliveries.c.alert_id == alerts.c.id))
                .where(
                    alerts.c.event_id == event_id,
                    alerts.c.kind == AlertKind.ALERT,
                    or_(
                        deliveries.c.status.in_((DeliveryStatus.SENT, DeliveryStatus.UNCERTAIN)),
                        deliveries.c.was_uncertain.is_(True),
                    ),
                )
            )
        )
        async with self.db.engine.connect() as conn:
            return bool((await conn.execute(query)).scalar())

    # -- claiming ----------------------------------------------------------------

    async def claim(self, limit: int, *, now: datetime, lease_s: float) -> list[Claim]:
        """Take up to `limit` due deliveries for this owner under a lease of `lease_s`.

        Due: pending/retry/uncertain whose time has come, and `sending` rows whose lease
        expired (a crashed sender's work). One UPDATE; on PostgreSQL its subquery locks
        with SKIP LOCKED so concurrent senders take disjoint rows.
        """
        due = or_(
            and_(deliveries.c.status.in_(DUE), deliveries.c.next_attempt_at <= now),
            and_(
                deliveries.c.status == DeliveryStatus.SENDING, deliveries.c.lease_expires_at <= now
            ),
        )
        chosen = select(deliveries.c.id).where(due).limit(limit)
        if self.db.is_postgres:
            chosen = chosen.with_for_update(skip_locked=True)
        stmt = (
            update(deliveries)
            .where(deliveries.c.id.in_(chosen.scalar_subquery()))
            .values(
                status=DeliveryStatus.SENDING,
                lease_owner=self.owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                attempts=deliveries.c.attempts + 1,
                updated_at=now,
            )
            .returning(deliveries.c.id)
        )
        async with self.db.engine.begin() as conn:
            ids = list((await conn.execute(stmt)).scalars())
            if not ids:
                return []
            sequence = func.coalesce(event_versions.c.sequence, 0)
            query = (
                select(
                    deliveries.c.id.label("delivery_id"),
                    deliveries.c.attempts,
                    deliveries.c.created_at,
                    deliveries.c.was_uncertain,
                    deliveries.c.last_error.is_not(None).label("failed_before"),
                    alerts.c.id.label("alert_id"),
                    alerts.c.key.label("alert_key"),
                    alerts.c.event_id,
                    alerts.c.reminder,
                    alerts.c.kind,
                    alerts.c.change,
                    alerts.c.previous_when,
                    case(
                        (alerts.c.kind == AlertKind.NOTICE, alerts.c.sequence), else_=sequence
                    ).label("sequence"),
                    subscribers.c.id.label("subscriber_id"),
                    subscribers.c.email,
                    subscribers.c.name,
                    subscribers.c.locale,
                    subscribers.c.timezone,
                    subscribers.c.status.label("subscriber_status"),
                    subscribers.c.link_nonce,
                )
                .select_from(
                    deliveries.join(alerts, deliveries.c.alert_id == alerts.c.id)
                    .join(subscribers, deliveries.c.subscriber_id == subscribers.c.id)
                    .outerjoin(event_versions, event_versions.c.event_id == alerts.c.event_id)
                )
                .where(deliveries.c.id.in_(ids))
                .order_by(deliveries.c.id)
            )
            rows = (await conn.execute(query)).all()
        return [
            Claim(**{**row._mapping, "previous_when": _when_from_text(row.previous_when)})
            for row in rows
        ]

    async def subscriber_statuses(self, subscriber_ids: Iterable[int]) -> dict[int, str]:
        """Current status of each subscriber (opt-out is checked again right before sending)."""
        ids = list(set(subscriber_ids))
        if not ids:
            return {}
        query = select(subscribers.c.id, subscribers.c.status).where(subscribers.c.id.in_(ids))
        async with self.db.engine.connect() as conn:
            return {int(i): str(s) for i, s in (await conn.execute(query)).all()}

    async def next_due(self) -> datetime | None:
        """When the next delivery becomes claimable (a retry, or an expired lease)."""
        query = select(
            select(func.min(deliveries.c.next_attempt_at))
            .where(deliveries.c.status.in_(DUE))
            .scalar_subquery(),
            select(func.min(deliveries.c.lease_expires_at))
            .where(deliveries.c.status == DeliveryStatus.SENDING)
            .scalar_subquery(),
        )
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).one()
        times = [t for t in row if t is not None]
        return min(times) if times else None

    # -- outcomes ----------------------------------------------------------------

    async def record(self, outcomes: Sequence[Outcome], *, now: datetime) -> int:
        """Write a batch of outcomes in one transaction; returns how many rows changed.

        Each write is conditional on this owner still holding the delivery: a sender
        whose lease expired and was taken over does not overwrite the new owner's work.
        """
        if not outcomes:
            return 0
        # rows locked in one order by every writer: no deadlock between transactions
        outcomes = sorted(outcomes, key=lambda o: o.delivery_id)
        sent = [o for o in outcomes if isinstance(o, Sent)]
        retry = [o for o in outcomes if isinstance(o, Retry)]
        uncertain = [o for o in outcomes if isinstance(o, Uncertain)]
        failed = [o for o in outcomes if isinstance(o, Failed)]
        skipped = [o for o in outcomes if isinstance(o, Skipped)]
        mine = and_(
            deliveries.c.id == bindparam("b_id"),
            deliveries.c.lease_owner == self.owner,
            deliveries.c.status == DeliveryStatus.SENDING,
        )
        released = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
        changed = 0
        async with self.db.engine.begin() as conn:
            if self.db.is_postgres:
                # Outcomes are committed before each connection sends again (the crash
                # bound). Durable against a crash of this process is enough: the commit
                # is in the server's memory at once; waiting for its WAL flush only
                # guards against the database server itself crashing.
                await conn.execute(text("SET LOCAL synchronous_commit = off"))

            async def write(rows: list[dict[str, Any]], **values: Any) -> None:
                nonlocal changed
                if rows:
                    stmt = update(deliveries).where(mine).values(**values, **released)
                    changed += (await conn.execute(stmt, rows)).rowcount

            await write(
                [
                    {"b_id": o.delivery_id, "b_mid": o.message_id, "b_code": _reply_code(o.reply)}
                    for o in sent
                ],
                status=DeliveryStatus.SENT,
                message_id=bindparam("b_mid"),
                last_code=bindparam("b_code"),
                last_error=None,
                sent_at=now,
            )
            await write(
                [
                    {
                        "b_id": o.delivery_id,
                        "b_code": o.code,
                        "b_error": o.error,
                        "b_next": o.next_attempt_at,
                    }
                    for o in retry
                ],
                status=DeliveryStatus.RETRY,
                last_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                next_attempt_at=bindparam("b_next"),
            )
            await write(
                [
                    {"b_id": o.delivery_id, "b_error": o.error, "b_next": o.next_attempt_at}
                    for o in uncertain
                ],
                status=DeliveryStatus.UNCERTAIN,
                was_uncertain=True,
                last_code=None,
                last_error=bindparam("b_error"),
                next_attempt_at=bindparam("b_next"),
            )
            await write(
                [{"b_id": o.delivery_id, "b_code": o.code, "b_error": o.error} for o in failed],
                status=DeliveryStatus.FAILED,
                last_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
            )
            bounced = [o.hard_bounce_subscriber for o in failed if o.hard_bounce_subscriber]
            if bounced:
                await self._count_bounces(conn, bounced, now=now)
            await write(
                [{"b_id": o.delivery_id, "b_error": o.reason} for o in skipped],
                status=DeliveryStatus.SKIPPED,
                last_error=bindparam("b_error"),
            )
        return changed

    async def _count_bounces(
        self, conn: AsyncConnection, subscriber_ids: list[int], *, now: datetime
    ) -> None:
        await conn.execute(
            update(subscribers)
            .where(subscribers.c.id == bindparam("b_id"))
            .values(hard_bounces=subscribers.c.hard_bounces + 1, updated_at=now),
            [{"b_id": i} for i in subscriber_ids],
        )
        newly = list(
            (
                await conn.execute(
                    update(subscribers)
                    .where(
                        subscribers.c.id.in_(set(subscriber_ids)),
                        subscribers.c.hard_bounces >= BOUNCE_LIMIT,
                        subscribers.c.status != SubscriberStatus.BOUNCED,
                    )
                    .values(status=SubscriberStatus.BOUNCED, updated_at=now)
                    .returning(subscribers.c.id)
                )
            ).scalars()
        )
        if not newly:
            return
        # their other open deliveries go nowhere now (a `sending` one is left to its owner,
        # whose opt-out check before sending will skip it)
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.subscriber_id.in_(newly), deliveries.c.status.in_(DUE))
            .values(status=DeliveryStatus.SKIPPED, last_error="address bounced", updated_at=now)
        )
        for subscriber_id in newly:
            logger.info(
                "subscriber %d: suppressed after %d hard bounces",
                subscriber_id,
                BOUNCE_LIMIT,
                extra={"action": "subscriber_bounced", "subscriber": subscriber_id},
            )

    async def release(
        self,
        *,
        now: datetime,
        delivery_ids: Iterable[int] | None = None,
        not_before: datetime | None = None,
    ) -> int:
        """Give this owner's `sending` deliveries back as pending (clean shutdown).

        The attempt they were claimed for never happened, so it is not counted.
        `not_before`: due again only then (the relay is down: pause, do not spin).
        """
        where = [
            deliveries.c.lease_owner == self.owner,
            deliveries.c.status == DeliveryStatus.SENDING,
        ]
        if delivery_ids is not None:
            ids = list(delivery_ids)
            if not ids:
                return 0
            where.append(deliveries.c.id.in_(ids))
        stmt = (
            update(deliveries)
            .where(*where)
            .values(
                status=case(
                    (deliveries.c.was_uncertain.is_(True), DeliveryStatus.UNCERTAIN),
                    else_=DeliveryStatus.PENDING,
                ),
                attempts=case((deliveries.c.attempts > 0, deliveries.c.attempts - 1), else_=0),
                next_attempt_at=not_before or now,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
        )
        async with self.db.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def renew(self, delivery_ids: Sequence[int], *, now: datetime, lease_s: float) -> int:
        """Extend this owner's lease on deliveries still being worked on."""
        if not delivery_ids:
            return 0
        stmt = (
            update(deliveries)
            .where(
                deliveries.c.id.in_(list(delivery_ids)),
                deliveries.c.lease_owner == self.owner,
                deliveries.c.status == DeliveryStatus.SENDING,
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_s))
        )
        async with self.db.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    # -- reading -----------------------------------------------------------------

    async def status_summary(self, *, now: datetime) -> StatusSummary:
        """Per alert (due order): delivery counts by status; and the oldest open delivery's age."""
        d = deliveries.c

        def count(condition: ColumnElement[bool]) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        query = (
            select(
                alerts.c.key,
                alerts.c.event_id,
                alerts.c.reminder,
                alerts.c.kind,
                alerts.c.due_at,
                alerts.c.fired_at,
                alerts.c.status,
                count(d.status == DeliveryStatus.SENT),
                count(d.status.in_((DeliveryStatus.PENDING, DeliveryStatus.SENDING))),
                count(d.status == DeliveryStatus.RETRY),
                count(d.status == DeliveryStatus.FAILED),
                count(or_(d.was_uncertain.is_(True), d.status == DeliveryStatus.UNCERTAIN)),
                count(d.status == DeliveryStatus.SKIPPED),
                count(d.status == DeliveryStatus.BOUNCED),
                count(d.status == DeliveryStatus.COMPLAINED),
                count(and_(d.status == DeliveryStatus.SKIPPED, d.last_error == "stale")),
                alerts.c.skip_reason,
            )
            .select_from(alerts.outerjoin(deliveries, d.alert_id == alerts.c.id))
            .group_by(alerts.c.id)
            .order_by(alerts.c.due_at, alerts.c.id)
        )
        oldest = select(func.min(d.created_at)).where(d.status.in_(OPEN))
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            first = (await conn.execute(oldest)).scalar()
        return StatusSummary(
            [_alert_status(row) for row in rows],
            (now - first).total_seconds() if first is not None else None,
        )

    async def alert_counts(self, alert_id: int) -> dict[str, int]:
        """Deliveries of one alert by status (the CLI's progress and summary)."""
        query = (
            select(deliveries.c.status, func.count())
            .where(deliveries.c.alert_id == alert_id)
            .group_by(deliveries.c.status)
        )
        async with self.db.engine.connect() as conn:
            return {str(s): int(n) for s, n in (await conn.execute(query)).all()}

    async def counts(self, *, now: datetime) -> LedgerCounts:
        """Deliveries by status, queue depth, possible duplicates, alerts by state (one connection)."""
        d = deliveries.c
        due = d.status.in_(DUE) & (d.next_attempt_at <= now)
        ever_uncertain = or_(d.was_uncertain.is_(True), d.status == DeliveryStatus.UNCERTAIN)
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(d.status, func.count()).group_by(d.status))
            by_status = {str(s): int(n) for s, n in rows}
            depth = (await conn.execute(select(func.count()).where(due))).scalar_one()
            query = select(func.count()).select_from(deliveries).where(ever_uncertain)
            uncertain = (await conn.execute(query)).scalar_one()
            oldest = (
                await conn.execute(select(func.min(d.created_at)).where(d.status.in_(OPEN)))
            ).scalar()
            rows = await conn.execute(
                select(alerts.c.status, func.count()).group_by(alerts.c.status)
            )
            by_state = {str(s): int(n) for s, n in rows}
            stale_skipped = d.status == DeliveryStatus.SKIPPED, d.last_error == "stale"
            query = select(func.count()).select_from(deliveries).where(*stale_skipped)
            stale = (await conn.execute(query)).scalar_one()
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
        return LedgerCounts(by_status, int(depth), int(uncertain), age, by_state, int(stale))

    async def failed_deliveries(
        self, *, event_id: str | None = None, limit: int = 1000
    ) -> list[FailedDelivery]:
        """Failed deliveries, newest first, with the address and the server's reason
        (`campaignbot status --failed`)."""
        d = deliveries.c
        query = (
            select(
                alerts.c.key,
                alerts.c.event_id,
                subscribers.c.email,
                d.last_code,
                d.last_error,
                d.updated_at,
            )
            .select_from(
                deliveries.join(alerts, d.alert_id == alerts.c.id).join(
                    subscribers, d.subscriber_id == subscribers.c.id
                )
            )
            .where(d.status == DeliveryStatus.FAILED)
            .order_by(d.updated_at.desc(), d.id.desc())
            .limit(limit)
        )
        if event_id is not None:
            query = query.where(alerts.c.event_id == event_id)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [FailedDelivery(*row) for row in rows]


@dataclass(frozen=True)
class FailedDelivery:
    """One failed delivery: which alert, to whom, and why."""

    key: str
    event: str
    email: str
    code: int | None
    reason: str | None
    at: datetime
