"""Bounce and complaint reports received after acceptance (mailbox and relay webhooks).

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from campaignbot.storage.tables import UTCDateTime

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bounce_reports",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("delivery_id", _BigId, nullable=True),
        sa.Column("subscriber_id", _BigId, nullable=True),
        sa.Column("status_code", sa.String(length=16), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=False, server_default=""),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_reports"),
        sa.UniqueConstraint("key", name="uq_bounce_reports_key"),
    )
    op.create_index("ix_bounce_reports_received_at", "bounce_reports", ["received_at"])
    op.create_index(
        "ix_bounce_reports_subscriber_id_kind",
        "bounce_reports",
        ["subscriber_id", "kind", "received_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_bounce_reports_subscriber_id_kind", table_name="bounce_reports")
    op.drop_index("ix_bounce_reports_received_at", table_name="bounce_reports")
    op.drop_table("bounce_reports")
