"""Web sign-ups (double opt-in) in the database: the request outbox, pending sign-ups,
confirmation and the purge.

POST /subscribe only calls `request`: one INSERT into `signup_outbox`, the same
statement whatever the address, so neither the answer nor its timing tells whether
the address is known. `take_requests` later folds the outbox into `signups` (one row
per address) in the same transaction that deletes the request, so a crash loses
nothing. A pending sign-up is kept apart from `subscribers`: nothing about an existing
subscriber changes until the confirm link is followed (`confirm`), and a confirm
token names the sign-up row and its nonce, so it works once and only for the request
it was mailed for.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from campaignbot.errors import StoreError
from campaignbot.storage.database import Database
from campaignbot.storage.tables import signup_outbox, signups, subscribers
from campaignbot.subscribers.model import (
    Subscriber,
    SubscriberInput,
    SubscriberStatus,
    email_key,
    new_link_nonce,
)
from campaignbot.subscribers.store import entry_fields, subscriber_from_row

#: at most one confirmation mail per address in this long (mail-bombing)
MAIL_INTERVAL = timedelta(hours=24)
#: pending sign-ups are forgotten after this long (the confirm link expires too)
PENDING_FOR = timedelta(days=7)
#: a drain that claimed a mail and crashed: another one sends it after this long
MAIL_LEASE = timedelta(minutes=5)
#: an address with this status gets a confirmation mail; any other is already decided
#: (active: nothing to confirm; bounced and the like: only the organizer may change it)
_MAY_SIGN_UP = (SubscriberStatus.PENDING.value, SubscriberStatus.UNSUBSCRIBED.value)
_FIELDS = ("email", "name", "locale", "timezone", "countries", "topics", "follows_all", "source")


@dataclass(frozen=True)
class Signup:
    """A pending sign-up whose confirmation mail is owed."""

    id: int
    email: str
    locale: str
    timezone: str
    nonce: str


def _request_row(entry: SubscriberInput, *, now: datetime, source: str) -> dict[str, Any]:
    return {**entry_fields(entry), "source": source[:200], "created_at": now}


class SignupStore:
    """Data access for `signup_outbox` and `signups`; every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._db.engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as err:
            cause = getattr(err, "orig", None) or err
            first = (str(cause).splitlines() or [type(cause).__name__])[0][:300]
            raise StoreError(f"{self._db.display_url}: {first}") from None

    async def request(self, entry: SubscriberInput, *, now: datetime, source: str) -> None:
        """Record a sign-up request durably: one INSERT, whatever the address."""
        async with self._begin() as conn:
            await conn.execute(
                insert(signup_outbox).values(_request_row(entry, now=now, source=source))
            )

    async def take_requests(self, *, now: datetime, limit: int = 100) -> int:
        """Fold up to `limit` outbox requests into pending sign-ups; how many were taken.

        A request for an address that is active, bounced or already mailed within
        MAIL_INTERVAL changes nothing. Otherwise the address's pending sign-up gets the
        requested fields, a new nonce (older confirm links stop working) and a mail due.
        """
        async with self._begin() as conn:
            query = select(signup_outbox).order_by(signup_outbox.c.id).limit(limit)
            if self._db.is_postgres:  # several processes drain: each request once
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).mappings().all()
            for row in rows:
                await self._take(conn, row, now)
            if rows:
                ids = [row["id"] for row in rows]
                await conn.execute(delete(signup_outbox).where(signup_outbox.c.id.in_(ids)))
        return len(rows)

    async def _take(self, conn: AsyncConnection, row: Any, now: datetime) -> None:
        key = email_key(row["email"])
        status = (
            await conn.execute(select(subscribers.c.status).where(subscribers.c.email_key == key))
        ).scalar()
        if status is not None and status not in _MAY_SIGN_UP:
            return
        pending = (
            (await conn.execute(select(signups).where(signups.c.email_key == key)))
            .mappings()
            .first()
        )
        fields = {name: row[name] for name in _FIELDS}
        fresh = {**fields, "nonce": new_link_nonce(), "created_at": now, "mail_due": True}
        if pending is None:
            await conn.execute(insert(signups).values(email_key=key, **fresh))
            return
        mailed = pending["mailed_at"]
        if pending["mail_due"] or (mailed is not None and now - mailed < MAIL_INTERVAL):
            return  # one mail per address per day: the request changes nothing
        await conn.execute(
            update(signups)
            .where(signups.c.id == pending["id"])
            .values(**fresh, mailed_at=None, confirmed_at=None)
        )

    async def due_mails(self, *, now: datetime, limit: int = 100) -> list[Signup]:
        """Pending sign-ups owed a confirmation mail that no live drain is sending."""
        query = (
            select(
                signups.c.id, signups.c.email, signups.c.locale, signups.c.timezone, signups.c.nonce
            )
            .where(signups.c.mail_due, self._unclaimed(now))
            .order_by(signups.c.id)
            .limit(limit)
        )
        async with self._begin() as conn:
            return [Signup(**row) for row in (await conn.execute(query)).mappings()]

    @staticmethod
    def _unclaimed(now: datetime) -> Any:
        return or_(signups.c.mailed_at.is_(None), signups.c.mailed_at < now - MAIL_LEASE)

    async def claim_mail(self, signup: Signup, *, now: datetime) -> bool:
        """Take the mail of `signup` for sending; False if another drain has it.
        `mailed_at` is the claim: the mail stays due until `mail_sent`, so a crash
        while sending means the mail goes out again after MAIL_LEASE."""
        query = (
            update(signups)
            .where(
                signups.c.id == signup.id,
                signups.c.nonce == signup.nonce,
                signups.c.mail_due,
                self._unclaimed(now),
            )
            .values(mailed_at=now)
        )
        async with self._begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def mail_sent(self, signup: Signup) -> None:
        """The mail was handed over (or failed for good): nothing more is due."""
        query = update(signups).where(signups.c.id == signup.id).values(mail_due=False)
        async with self._begin() as conn:
            await conn.execute(query)

    async def mail_failed(self, signup: Signup) -> None:
        """A temporary failure: the next drain tries again."""
        query = update(signups).where(signups.c.id == signup.id).values(mailed_at=None)
        async with self._begin() as conn:
            await conn.execute(query)

    async def pending(self, signup_id: int, nonce: str) -> tuple[str, str] | None:
        """The address and locale of a live sign-up (not used, not superseded)."""
        query = select(signups.c.email, signups.c.locale, signups.c.nonce).where(
            signups.c.id == signup_id, signups.c.confirmed_at.is_(None)
        )
        async with self._begin() as conn:
            row = (await conn.execute(query)).first()
        if row is None or not hmac.compare_digest(row.nonce.encode(), nonce.encode()):
            return None
        return row.email, row.locale

    async def confirm(self, signup_id: int, nonce: str, *, now: datetime) -> Subscriber | None:
        """Follow a confirm link: the sign-up's fields become the subscriber's, active,
        with consent recorded now and a new link nonce. None when the link is not for
        a live sign-up (unknown, superseded by a newer request, or already used).

        An active subscriber stays as is; a bounced one too (only the organizer
        lifts that); their row is returned so the page can say so.
        """
        async with self._begin() as conn:
            row = (
                (await conn.execute(select(signups).where(signups.c.id == signup_id)))
                .mappings()
                .first()
            )
            if (
                row is None
                or row["confirmed_at"] is not None
                or not hmac.compare_digest(row["nonce"].encode(), nonce.encode())
            ):
                return None
            used = (
                update(signups)
                .where(signups.c.id == signup_id, signups.c.confirmed_at.is_(None))
                .values(confirmed_at=now, mail_due=False)
            )
            if (await conn.execute(used)).rowcount != 1:
                return None  # used at this very moment by another request
            return await self._activate(conn, row, now)

    async def _activate(self, conn: AsyncConnection, row: Any, now: datetime) -> Subscriber | None:
        fields = {name: row[name] for name in _FIELDS if name != "source"}
        active = {
            **fields,
            "status": SubscriberStatus.ACTIVE.value,
            "consent_at": now,
            "consent_source": row["source"],
            "updated_at": now,
            "link_nonce": new_link_nonce(),
        }
        changed = (
            update(subscribers)
            .where(
                subscribers.c.email_key == row["email_key"], subscribers.c.status.in_(_MAY_SIGN_UP)
            )
            .values(active)
            .returning(*subscribers.c)
        )
        found = (await conn.execute(changed)).mappings().first()
        if found is None:
            existing = (
                (
                    await conn.execute(
                        select(subscribers).where(subscribers.c.email_key == row["email_key"])
                    )
                )
                .mappings()
                .first()
            )
            if existing is not None:
                return subscriber_from_row(existing)
            try:
                async with conn.begin_nested():
                    found = (
                        (
                            await conn.execute(
                                insert(subscribers)
                                .values(email_key=row["email_key"], created_at=now, **active)
                                .returning(*subscribers.c)
                            )
                        )
                        .mappings()
                        .one()
                    )
            except IntegrityError:  # added by the organizer at this very moment
                return None
        return subscriber_from_row(found)

    async def purge(self, *, now: datetime) -> int:
        """Forget sign-ups made more than PENDING_FOR ago (and pending subscribers of the
        web form from before the sign-up table); how many rows went."""
        cutoff = now - PENDING_FOR
        async with self._begin() as conn:
            gone = (
                await conn.execute(delete(signups).where(signups.c.created_at < cutoff))
            ).rowcount
            legacy = delete(subscribers).where(
                and_(
                    subscribers.c.status == SubscriberStatus.PENDING.value,
                    subscribers.c.consent_source == "web sign-up",
                    subscribers.c.created_at < cutoff,
                )
            )
            return int(gone) + int((await conn.execute(legacy)).rowcount)
