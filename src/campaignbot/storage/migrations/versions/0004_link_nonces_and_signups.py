"""Link nonces, ids never reused on SQLite, and the web sign-up tables.

- `subscribers.link_nonce`: in every link token, rotated on unsubscribe and
  re-subscribe. Existing rows keep '' so links in mails already sent keep working
  until the row's state changes.
- SQLite: `subscribers` is rebuilt with AUTOINCREMENT, so a deleted subscriber's id
  is never handed out again (PostgreSQL sequences never reuse ids anyway).
- `signup_outbox` and `signups`: sign-up requests and pending sign-ups.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from campaignbot.storage.tables import UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _request_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("countries", sa.String(length=400), server_default="", nullable=False),
        sa.Column("topics", sa.String(length=2000), server_default="", nullable=False),
        sa.Column("follows_all", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("source", sa.String(length=200), server_default="", nullable=False),
    ]


def _rebuild_subscribers_with_autoincrement() -> None:
    bind = op.get_bind()
    # Rebuilding drops the old table; with foreign keys on, that DROP would cascade
    # into every table that references it (deliveries). SQLite ignores this pragma
    # inside a transaction, and one is open when an earlier revision of this run
    # wrote something (at least alembic_version): that work is complete, so commit
    # it, then switch the pragma off for the rebuild.
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        bind.exec_driver_sql("COMMIT")
        bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("cannot switch SQLite foreign keys off to rebuild subscribers")
    with op.batch_alter_table(
        "subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(
            sa.Column("link_nonce", sa.String(length=32), server_default="", nullable=False)
        )
    # no-op inside the migration's transaction; Database.upgrade drops its connections
    bind.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_subscribers_with_autoincrement()
    else:
        with op.batch_alter_table("subscribers") as batch:
            batch.add_column(
                sa.Column("link_nonce", sa.String(length=32), server_default="", nullable=False)
            )
    op.create_table(
        "signup_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        *_request_columns(),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signup_outbox")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "signups",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        *_request_columns(),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("mail_due", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("mailed_at", UTCDateTime(), nullable=True),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signups")),
        sa.UniqueConstraint("email_key", name=op.f("uq_signups_email_key")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_signups_created_at", "signups", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_signups_created_at", table_name="signups")
    op.drop_table("signups")
    op.drop_table("signup_outbox")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("link_nonce")
