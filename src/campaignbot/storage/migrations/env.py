"""Alembic environment: runs on the connection campaignbot hands in (see database.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from campaignbot.storage.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `campaignbot db upgrade`")
_run(connection)
