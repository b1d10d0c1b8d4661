"""Schema and engine behaviour on every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from campaignbot.errors import ConfigError
from campaignbot.storage.database import Database, alembic_config, async_url, open_database
from campaignbot.storage.tables import metadata

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrations_create_every_table(db: Database) -> None:
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {t.name for t in metadata.sorted_tables} <= names


async def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    await db.upgrade()
    async with db.engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert version == HEAD


async def test_the_migrations_build_what_tables_py_describes(db: Database) -> None:
    def differences(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_an_old_schema_with_data_upgrades_in_place(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/old.db")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            await conn.execute(
                text(
                    "INSERT INTO event_versions (event_id, fingerprint, sequence, updated_at) "
                    "VALUES ('fi-vote', 'at:2027-01-01T10:00Z|scheduled', 2, '2026-11-30')"
                )
            )
        await db.upgrade()
        async with db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM event_versions"))).one()
        assert (row.event_id, row.sequence, row.snapshot) == ("fi-vote", 2, None)
    finally:
        await db.dispose()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/sub/dir/x.db")
    try:
        await db.upgrade()
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///var/campaignbot.db", "sqlite+aiosqlite"),
        ("postgresql://postgres@127.0.0.1/x", "postgresql+asyncpg"),
        ("postgres://postgres@127.0.0.1/x", "postgresql+asyncpg"),
    ],
)
def test_async_url_picks_the_async_driver(url: str, driver: str) -> None:
    assert async_url(url).drivername == driver


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "not a url"])
def test_unsupported_database_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="CAMPAIGNBOT_DATABASE_URL"):
        async_url(url)


@pytest.mark.postgres
async def test_processes_starting_together_on_an_empty_postgres_database_all_migrate() -> None:
    import asyncio
    import os
    import uuid

    from sqlalchemy.engine import make_url

    from tests.fixtures.db import POSTGRES_ENV, _admin

    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = f"campaignbot_migrate_{uuid.uuid4().hex[:10]}"
    await _admin(base, f'CREATE DATABASE "{name}"')
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    databases = [open_database(url) for _ in range(4)]
    try:
        # without the migration lock they deadlock or collide on catalog rows
        await asyncio.wait_for(asyncio.gather(*(db.upgrade() for db in databases)), 60)
        async with databases[0].engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert version == [(HEAD,)]
    finally:
        for db in databases:
            await db.dispose()
        await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_an_unreachable_database_is_one_clear_store_error(tmp_path: Path) -> None:
    from campaignbot.errors import StoreError

    db = open_database("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(
            StoreError, match=r"127\.0\.0\.1:1/nowhere: cannot migrate the database"
        ):
            await db.upgrade()
    finally:
        await db.dispose()
