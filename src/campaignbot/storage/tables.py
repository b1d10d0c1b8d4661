"""The database schema (SQLAlchemy Core); Alembic migrations are written against it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

#: Stable constraint names, so migrations can refer to them on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite has no 64-bit autoincrement alias other than INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # as entered after email-validator normalisation; `email_key` is its lowercase form,
    # so uniqueness is case-insensitive on every backend
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("locale", String(16), nullable=False),
    Column("timezone", String(64), nullable=False),
    # ';'-separated, wrapped in ';' (";FI;PL;"), so `LIKE '%;FI;%'` matches on every backend
    Column("countries", String(400), nullable=False, server_default=""),
    Column("topics", String(2000), nullable=False, server_default=""),
    Column("follows_all", Boolean, nullable=False, server_default="0"),
    # pending | active | unsubscribed | bounced | complained
    Column("status", String(16), nullable=False),
    Column("consent_at", UTCDateTime, nullable=True),
    Column("consent_source", String(200), nullable=False, server_default=""),
    Column("hard_bounces", Integer, nullable=False, server_default="0"),
    # why the status was set by hand (`subscribers suppress --reason`)
    Column("status_reason", String(500), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # random, in every link token; a new one on unsubscribe and re-subscribe, so links
    # from before stop working ('' for rows from before migration 0004)
    Column("link_nonce", String(32), nullable=False, server_default=""),
    # AUTOINCREMENT: SQLite would otherwise hand a deleted subscriber's id to the next
    # one, and old links name ids
    sqlite_autoincrement=True,
)
Index("ix_subscribers_status", subscribers.c.status)

#: What campaignbot last saw of each event, to notice changes across reloads and restarts.
event_versions = Table(
    "event_versions",
    metadata,
    Column("event_id", String(64), primary_key=True),
    # when (UTC ISO) + status; a change of either means subscribers need a notice
    Column("fingerprint", String(200), nullable=False),
    # the iCalendar SEQUENCE: grows by one on every change
    Column("sequence", Integer, nullable=False, server_default="0"),
    # the event as last seen (JSON of campaign.Event): a notice can still be written
    # about an event deleted from the file, and tell the date it had before a move
    Column("snapshot", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # "event:reminder" for alerts, "event:notice:sequence" for notices; firing twice adds
    # nothing because of this unique key
    Column("key", String(200), nullable=False, unique=True),
    Column("event_id", String(64), nullable=False),
    Column("reminder", String(16), nullable=False),  # offset label, or "notice"
    Column("kind", String(16), nullable=False),  # alert | notice
    Column("change", String(16), nullable=True),  # notices: rescheduled|postponed|cancelled
    # notices: the event's `when` before the change (ISO date, or date-time with offset)
    Column("previous_when", String(40), nullable=True),
    Column("sequence", Integer, nullable=False, server_default="0"),
    Column("due_at", UTCDateTime, nullable=False),
    Column("fired_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # fired | skipped
    Column("deliveries", Integer, nullable=False, server_default="0"),
    # skipped alerts: stale | missed | superseded (campaign.firing.SkipReason)
    Column("skip_reason", String(16), nullable=True),
)
Index("ix_alerts_event_id", alerts.c.event_id)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigId, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column(
        "subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False
    ),
    # pending | sending | sent | retry | failed | uncertain | skipped | bounced | complained
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    # a timeout after DATA happened once: the message may exist twice
    Column("was_uncertain", Boolean, nullable=False, server_default="0"),
    Column("message_id", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    UniqueConstraint("alert_id", "subscriber_id"),
)
# the sender's claim query: due work in order
Index("ix_deliveries_status_next_attempt_at", deliveries.c.status, deliveries.c.next_attempt_at)
Index("ix_deliveries_subscriber_id", deliveries.c.subscriber_id)

#: Bounce and complaint reports seen after acceptance (mailbox and relay webhooks); the
#: unique key makes reading the same message or replaying the same event count once.
bounce_reports = Table(
    "bounce_reports",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # "maildir:NAME#i", "imap:FOLDER:UIDVALIDITY:UID#i", "mailgun:EVENT-ID", ...
    Column("key", String(300), nullable=False, unique=True),
    Column("source", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # hard | soft | complaint | other
    Column("email", String(320), nullable=True),
    Column("delivery_id", BigId, nullable=True),
    Column("subscriber_id", BigId, nullable=True),
    Column("status_code", String(16), nullable=True),  # enhanced status, e.g. 5.1.1
    Column("smtp_code", Integer, nullable=True),
    Column("diagnostic", Text, nullable=False, server_default=""),
    # suppressed | unsubscribed | counted | already recorded | unmatched | ignored
    Column("action", String(32), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)
Index("ix_bounce_reports_received_at", bounce_reports.c.received_at)
Index(
    "ix_bounce_reports_subscriber_id_kind",
    bounce_reports.c.subscriber_id,
    bounce_reports.c.kind,
    bounce_reports.c.received_at,
)

# -- web sign-ups (double opt-in) ----------------------------------------------------

#: The sign-up form's durable outbox: POST /subscribe writes one row, whatever the
#: address, and answers; `drain_signup_outbox` does the rest (the same statements for
#: known and new addresses, so the answer's timing tells nothing).
signup_outbox = Table(
    "signup_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    Column("locale", String(16), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("countries", String(400), nullable=False, server_default=""),
    Column("topics", String(2000), nullable=False, server_default=""),
    Column("follows_all", Boolean, nullable=False, server_default="0"),
    Column("source", String(200), nullable=False, server_default=""),
    Column("created_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

#: A pending sign-up: what was asked for, kept apart from `subscribers` so nothing about
#: an existing subscriber changes until the confirm link is followed. One row per
#: address; purged 7 days after it was made.
signups = Table(
    "signups",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    Column("locale", String(16), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("countries", String(400), nullable=False, server_default=""),
    Column("topics", String(2000), nullable=False, server_default=""),
    Column("follows_all", Boolean, nullable=False, server_default="0"),
    Column("source", String(200), nullable=False, server_default=""),
    # in the confirm token: a newer request for the address makes older links useless
    Column("nonce", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # a confirmation mail is owed (set in the same transaction as the request is taken)
    Column("mail_due", Boolean, nullable=False, server_default="0"),
    # when the last confirmation mail went out: at most one per address per 24 h
    Column("mailed_at", UTCDateTime, nullable=True),
    # set when the link was followed: a confirm token works once
    Column("confirmed_at", UTCDateTime, nullable=True),
    sqlite_autoincrement=True,
)
Index("ix_signups_created_at", signups.c.created_at)
