"""Subscribers in the database: add, import, look up, filter, change and count."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, and_, delete, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

from campaignbot.campaign.model import Audience
from campaignbot.errors import InvalidInputError, StoreError
from campaignbot.storage.database import Database
from campaignbot.storage.tables import bounce_reports, subscribers
from campaignbot.subscribers.model import (
    FINAL_STATUSES,
    Subscriber,
    SubscriberInput,
    SubscriberStatus,
    decode_list,
    email_key,
    encode_list,
    new_link_nonce,
    normalize_countries,
    normalize_locale,
    normalize_timezone,
    normalize_topics,
)

#: Columns an import or a repeated sign-up may change; status and consent stay as they are.
_FIELDS = ("email", "name", "locale", "timezone", "countries", "topics", "follows_all")


class SubscriberExistsError(InvalidInputError):
    """The address is already a subscriber."""


@dataclass
class ImportCounts:
    """What an import did to the rows it was given."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


def audience_clause(audience: Audience) -> ColumnElement[bool]:
    """Active subscribers who follow the audience: everyone, a country, a topic, or all.

    Lists are stored wrapped in ';' (";FI;PL;"), so matching ";FI;" can never hit a
    code or topic that merely starts with the same letters ("mine" vs "mine-ban-treaty").
    """
    active = subscribers.c.status == SubscriberStatus.ACTIVE.value
    if audience.is_everyone:
        return active
    follows: list[ColumnElement[bool]] = [subscribers.c.follows_all == true()]
    follows += [
        subscribers.c.countries.contains(f";{code};", autoescape=True)
        for code in sorted(set(audience.countries))
    ]
    follows += [
        subscribers.c.topics.contains(f";{topic};", autoescape=True)
        for topic in sorted(set(audience.topics))
    ]
    return and_(active, or_(*follows))


def entry_fields(entry: SubscriberInput) -> dict[str, Any]:
    """The columns an entry fills (subscribers and sign-up requests share them)."""
    return {
        "email": entry.email,
        "name": entry.name,
        "locale": entry.locale,
        "timezone": entry.timezone,
        "countries": encode_list(entry.countries),
        "topics": encode_list(entry.topics),
        "follows_all": entry.follows_all,
    }


def _new_row(
    entry: SubscriberInput, *, now: datetime, status: SubscriberStatus, source: str
) -> dict[str, Any]:
    return {
        **entry_fields(entry),
        "email_key": entry.email_key,
        "status": status.value,
        # only an active subscriber has given (or been recorded as giving) consent
        "consent_at": now if status is SubscriberStatus.ACTIVE else None,
        "consent_source": source[:200],
        "created_at": now,
        "updated_at": now,
        "link_nonce": new_link_nonce(),
    }


def subscriber_from_row(row: RowMapping) -> Subscriber:
    """A `subscribers` row as a Subscriber."""
    return Subscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        locale=row["locale"],
        timezone=row["timezone"],
        countries=decode_list(row["countries"]),
        topics=decode_list(row["topics"]),
        follows_all=bool(row["follows_all"]),
        status=SubscriberStatus(row["status"]),
        consent_at=row["consent_at"],
        consent_source=row["consent_source"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        hard_bounces=row["hard_bounces"],
        link_nonce=row["link_nonce"],
    )


def _cause(err: Exception) -> BaseException:
    # SQLAlchemy's message carries the SQL and its parameters (addresses, names): report
    # the driver's own error instead
    orig = err.orig if isinstance(err, StatementError) else None
    return orig if isinstance(orig, BaseException) else err


class SubscriberStore:
    """Data access for the `subscribers` table; every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        """The database this store works on (the sign-up store shares it)."""
        return self._db

    def _insert(self) -> postgresql.Insert | sqlite.Insert:
        return (postgresql.insert if self._db.is_postgres else sqlite.insert)(subscribers)

    def _error(self, err: Exception) -> StoreError:
        cause = _cause(err)
        first = (str(cause).splitlines() or [type(cause).__name__])[0][:300]
        return StoreError(f"{self._db.display_url}: {first}")

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._db.engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as err:
            raise self._error(err) from _cause(err)

    async def _by_key(self, conn: AsyncConnection, key: str) -> Subscriber | None:
        query = select(subscribers).where(subscribers.c.email_key == key)
        row = (await conn.execute(query)).mappings().first()
        return subscriber_from_row(row) if row else None

    async def _by_id(self, conn: AsyncConnection, subscriber_id: int) -> Subscriber | None:
        query = select(subscribers).where(subscribers.c.id == subscriber_id)
        row = (await conn.execute(query)).mappings().first()
        return subscriber_from_row(row) if row else None

    async def add(
        self,
        entry: SubscriberInput,
        *,
        now: datetime,
        status: SubscriberStatus = SubscriberStatus.ACTIVE,
        source: str,
    ) -> Subscriber:
        """Insert a new subscriber; SubscriberExistsError when the address is known."""
        async with self._begin() as conn:
            existing = await self._by_key(conn, entry.email_key)
            if existing is None:
                values = _new_row(entry, now=now, status=status, source=source)
                try:
                    query = self._insert().values(values).returning(*subscribers.c)
                    row = (await conn.execute(query)).mappings().one()
                except IntegrityError:  # added concurrently since the look-up
                    pass
                else:
                    return subscriber_from_row(row)
                existing = await self._by_key(conn, entry.email_key)
        state = f" (status {existing.status}, id {existing.id})" if existing else ""
        raise SubscriberExistsError(f"{entry.email}: already a subscriber{state}")

    async def upsert_many(
        self,
        entries: Iterable[SubscriberInput],
        *,
        now: datetime,
        source: str,
        status: SubscriberStatus = SubscriberStatus.ACTIVE,
        batch_size: int = 2000,
    ) -> ImportCounts:
        """Import a stream of subscribers in batches inside ONE transaction.

        New addresses are inserted with `status` (consent from `source` at `now` when
        active). Known addresses get the new field values; their status and consent
        stay. Unsubscribed and bounced addresses are never changed, and a row with the
        same values is left alone (`updated_at` too). An exception raised while
        iterating `entries` rolls the whole import back.
        """
        counts = ImportCounts()
        async with self._begin() as conn:
            batch: dict[str, SubscriberInput] = {}
            for entry in entries:
                # a repeated address is written after the earlier one, so the last wins
                if entry.email_key in batch or len(batch) >= batch_size:
                    await self._upsert_batch(conn, batch, counts, now, status, source)
                    batch = {}
                batch[entry.email_key] = entry
            if batch:
                await self._upsert_batch(conn, batch, counts, now, status, source)
        return counts

    async def _upsert_batch(
        self,
        conn: AsyncConnection,
        batch: dict[str, SubscriberInput],
        counts: ImportCounts,
        now: datetime,
        status: SubscriberStatus,
        source: str,
    ) -> None:
        # The look-up decides added / updated / unchanged; the conditional upsert keeps
        # the write correct even if a sign-up races in between.
        columns = [
            subscribers.c.email_key,
            subscribers.c.status,
            *(subscribers.c[f] for f in _FIELDS),
        ]
        query = select(*columns).where(subscribers.c.email_key.in_(list(batch)))
        existing = {row["email_key"]: row for row in (await conn.execute(query)).mappings()}
        writes = []
        for key, entry in batch.items():
            old = existing.get(key)
            fields = entry_fields(entry)
            if old is None:
                counts.added += 1
            elif old["status"] in FINAL_STATUSES or all(
                old[name] == value for name, value in fields.items()
            ):
                counts.unchanged += 1
                continue
            else:
                counts.updated += 1
            writes.append(_new_row(entry, now=now, status=status, source=source))
        if writes:
            await conn.execute(self._upsert_statement(), writes)

    def _upsert_statement(self) -> Insert:
        insert = self._insert()
        new = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=[subscribers.c.email_key],
            set_={**{name: new[name] for name in _FIELDS}, "updated_at": new.updated_at},
            # no NOT IN: an expanding parameter cannot be used with executemany
            where=and_(
                *(subscribers.c.status != final.value for final in sorted(FINAL_STATUSES)),
                or_(*(subscribers.c[name] != new[name] for name in _FIELDS)),
            ),
        )

    async def get(self, subscriber_id: int) -> Subscriber | None:
        async with self._begin() as conn:
            return await self._by_id(conn, subscriber_id)

    async def get_by_email(self, email: str) -> Subscriber | None:
        """Case-insensitive look-up by address."""
        async with self._begin() as conn:
            return await self._by_key(conn, email_key(email))

    async def iterate(
        self,
        *,
        status: SubscriberStatus | None = None,
        country: str | None = None,
        topic: str | None = None,
        batch_size: int = 1000,
    ) -> AsyncGenerator[Subscriber, None]:
        """Stream subscribers in id order; `country` / `topic` match the chosen lists
        literally (subscribers who follow everything are not included)."""
        query = select(subscribers).order_by(subscribers.c.id)
        if status is not None:
            query = query.where(subscribers.c.status == status.value)
        if country is not None:
            code = country.strip().upper()
            query = query.where(subscribers.c.countries.contains(f";{code};", autoescape=True))
        if topic is not None:
            slug = topic.strip().lower()
            query = query.where(subscribers.c.topics.contains(f";{slug};", autoescape=True))
        try:
            async with self._db.engine.connect() as conn:
                result = await conn.stream(query.execution_options(yield_per=batch_size))
                async for row in result.mappings():
                    yield subscriber_from_row(row)
        except (SQLAlchemyError, OSError) as err:
            raise self._error(err) from _cause(err)

    async def list_subscribers(
        self,
        *,
        status: SubscriberStatus | None = None,
        country: str | None = None,
        topic: str | None = None,
    ) -> list[Subscriber]:
        """`iterate` collected into a list."""
        return [s async for s in self.iterate(status=status, country=country, topic=topic)]

    async def remove(self, email: str) -> bool:
        """Delete the subscriber (their deliveries cascade, their bounce reports go too);
        False if unknown."""
        key = email_key(email)
        async with self._begin() as conn:
            # erasure: the bounce reports name the address too
            reports = bounce_reports.c
            mine = select(subscribers.c.id).where(subscribers.c.email_key == key)
            await conn.execute(
                delete(bounce_reports).where(
                    or_(reports.subscriber_id.in_(mine), func.lower(reports.email) == key)
                )
            )
            query = delete(subscribers).where(subscribers.c.email_key == key)
            return (await conn.execute(query)).rowcount > 0

    async def set_status(
        self, subscriber_id: int, status: SubscriberStatus, *, now: datetime
    ) -> Subscriber | None:
        """Set the status (unsubscribe, bounce, ...); None if there is no such id.

        A change of status gets a new link nonce: links sent before it stop working.
        """
        async with self._begin() as conn:
            query = (
                update(subscribers)
                .where(subscribers.c.id == subscriber_id, subscribers.c.status != status.value)
                .values(status=status.value, updated_at=now, link_nonce=new_link_nonce())
                .returning(*subscribers.c)
            )
            row = (await conn.execute(query)).mappings().first()
            return subscriber_from_row(row) if row else await self._by_id(conn, subscriber_id)

    async def update_preferences(
        self,
        subscriber_id: int,
        *,
        countries: Iterable[str],
        topics: Iterable[str],
        locale: str,
        timezone: str,
        follows_all: bool | None = None,
        now: datetime,
    ) -> Subscriber | None:
        """Change what a subscriber follows and how they read; None if no such id.

        `follows_all=None` means: everything exactly when no country and no topic.
        Raises InvalidInputError for an unknown locale, zone, country or topic.
        """
        try:
            country_set, topic_set = normalize_countries(countries), normalize_topics(topics)
            values: dict[str, Any] = {
                "countries": encode_list(country_set),
                "topics": encode_list(topic_set),
                "locale": normalize_locale(locale),
                "timezone": normalize_timezone(timezone),
                "follows_all": (not country_set and not topic_set)
                if follows_all is None
                else follows_all,
                "updated_at": now,
            }
        except ValueError as err:
            raise InvalidInputError(str(err)) from None
        async with self._begin() as conn:
            query = (
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(values)
                .returning(*subscribers.c)
            )
            row = (await conn.execute(query)).mappings().first()
            return subscriber_from_row(row) if row else None

    async def count_by_status(self) -> dict[str, int]:
        """Subscribers by status (for `/metrics`)."""
        async with self._begin() as conn:
            query = select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
            return {str(s): int(n) for s, n in await conn.execute(query)}

    async def count_audience(self, audience: Audience) -> int:
        """How many active subscribers an event with this audience reaches."""
        async with self._begin() as conn:
            query = select(func.count()).select_from(subscribers).where(audience_clause(audience))
            return int((await conn.execute(query)).scalar_one())

    async def suppress(
        self, entry: SubscriberInput, *, reason: str, now: datetime
    ) -> tuple[Subscriber, bool]:
        """Mark an address do-not-contact, keeping (or creating) its record; an import
        or a sign-up can never re-add it. Returns the subscriber and whether it changed."""
        values = {
            "status": SubscriberStatus.SUPPRESSED.value,
            "status_reason": reason[:500],
            "updated_at": now,
        }
        async with self._begin() as conn:
            existing = await self._by_key(conn, entry.email_key)
            if existing is None:
                row = _new_row(entry, now=now, status=SubscriberStatus.SUPPRESSED, source="cli")
                await conn.execute(subscribers.insert().values(**row, status_reason=reason[:500]))
            elif existing.status is not SubscriberStatus.SUPPRESSED:
                query = update(subscribers).where(subscribers.c.id == existing.id)
                await conn.execute(query.values(**values))
            subscriber = await self._by_key(conn, entry.email_key)
        assert subscriber is not None
        return subscriber, existing is None or existing.status is not SubscriberStatus.SUPPRESSED

    async def unsuppress(self, email: str, *, now: datetime) -> Subscriber | None:
        """Lift a suppression: active again if they had given consent, else unsubscribed.
        None if the address is unknown or not suppressed."""
        async with self._begin() as conn:
            existing = await self._by_key(conn, email_key(email))
            if existing is None or existing.status is not SubscriberStatus.SUPPRESSED:
                return None
            status = (
                SubscriberStatus.ACTIVE if existing.consent_at else SubscriberStatus.UNSUBSCRIBED
            )
            query = update(subscribers).where(subscribers.c.id == existing.id)
            await conn.execute(
                query.values(status=status.value, status_reason=None, updated_at=now)
            )
            return await self._by_key(conn, email_key(email))
