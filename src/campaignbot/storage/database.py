"""Database engine from a URL (SQLite or PostgreSQL) and Alembic migrations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaignbot.errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> URL:
    """`sqlite:///x.db` / `postgresql://...` with the async driver campaignbot uses."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(f"CAMPAIGNBOT_DATABASE_URL: cannot parse {url!r}") from err
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(
        f"CAMPAIGNBOT_DATABASE_URL: unsupported database {backend!r}; "
        "use sqlite:///path or postgresql://user@host/db"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web server read while the sender writes; foreign keys are off by
    # default in SQLite; busy_timeout makes concurrent writers wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@dataclass
class Database:
    """One async engine; `is_postgres` selects backend-specific SQL where needed."""

    engine: AsyncEngine
    url: URL

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    async def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision.

        On PostgreSQL several processes may start together on an empty database: a
        transaction-scoped advisory lock lets one migrate while the others wait and
        then find the schema current.
        """
        try:
            async with self.engine.begin() as conn:
                if self.is_postgres:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
                await conn.run_sync(_run_upgrade)
            if not self.is_postgres:
                # a migration may turn SQLite's foreign keys off on its connection
                # (0004); new connections get the pragmas again
                await self.engine.dispose()
        except (SQLAlchemyError, OSError) as err:
            raise StoreError(
                f"{self.display_url}: cannot migrate the database: {_first_line(err)}",
                hint="check CAMPAIGNBOT_DATABASE_URL and that the database server is running",
            ) from None

    async def ping(self) -> None:
        """Raise StoreError when the database does not answer."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as err:
            raise StoreError(f"{self.display_url}: {_first_line(err)}") from None

    async def dispose(self) -> None:
        await self.engine.dispose()


#: advisory lock key for migrations ("campaign" in ASCII)
_LOCK = 0x63616D706169676E


def _first_line(err: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's SQL echo and links."""
    cause = getattr(err, "orig", None) or err
    text_ = str(cause).strip().splitlines()
    message = text_[0] if text_ else type(cause).__name__
    return f"{type(cause).__name__}: {message}" if isinstance(cause, OSError) else message


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _run_upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def open_database(url: str, *, pool_size: int = 10) -> Database:
    """Create the engine (no I/O yet); for SQLite also create the file's folder."""
    parsed = async_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_async_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return Database(engine=engine, url=parsed)
