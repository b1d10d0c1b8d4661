"""Shared CLI plumbing: the root group, settings, error reporting and exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import Console

from campaignbot import __version__
from campaignbot.campaign.model import Campaign, load_campaign
from campaignbot.errors import CampaignbotError, InvalidInputError
from campaignbot.settings import Settings, load_settings

if TYPE_CHECKING:
    from campaignbot.storage.database import Database

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Context:
    """What every command gets: settings, flags and a clock."""

    def __init__(self, settings: Settings, *, debug: bool) -> None:
        self.settings = settings
        self.debug = debug

    def now(self) -> datetime:
        return datetime.now(UTC)

    def campaign(self) -> Campaign:
        return load_campaign(self.settings.config)


pass_context = click.make_pass_decorator(Context)


def table_console() -> Console:
    """stdout for tables: piped output gets room for every column, not 80 characters."""
    console = Console()
    return console if console.is_terminal else Console(width=140)


def _print_error(err: BaseException, *, debug: bool) -> None:
    lines = str(err).splitlines() or [type(err).__name__]
    for line in lines:
        err_console.print(f"[red]error:[/red] {line}", markup=True, highlight=False)
    cause = err.__cause__
    # non-campaignbot causes add detail for operational failures (procrastinate does this)
    while cause is not None and not isinstance(err, InvalidInputError):
        if str(cause) and str(cause) not in lines:
            err_console.print(f"  caused by: {type(cause).__name__}: {cause}")
        cause = cause.__cause__
    hint = getattr(err, "hint", None)
    if hint:
        err_console.print(f"[yellow]hint:[/yellow] {hint}")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn campaignbot errors into one line each and the spec's exit codes."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except InvalidInputError as err:
            if debug:
                raise
            _print_error(err, debug=debug)
            ctx.exit(EXIT_INVALID)
        except CampaignbotError as err:
            if debug:
                raise
            _print_error(err, debug=debug)
            ctx.exit(EXIT_FAILURE)
        except KeyboardInterrupt:
            ctx.exit(130)
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


def run_async(coro: Coroutine[Any, Any, R]) -> R:
    """The one place commands enter asyncio."""
    return asyncio.run(coro)


def parse_time(value: str, *, param: str) -> datetime:
    """`--from`/`--until`: ISO 8601 date or date-time; naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-12-01T09:00+02:00)",
            param_hint=param,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="campaignbot")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Campaign file (env CAMPAIGNBOT_CONFIG, default config/campaign.toml).",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read settings from this file instead of ./.env (e.g. /etc/campaignbot/env).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, env_file: Path | None, debug: bool) -> None:
    """campaignbot: email each subscriber a localized alert before every campaign event."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    overrides: dict[str, object] = {"config": config} if config is not None else {}
    try:
        settings = load_settings(env_file=env_file, **overrides)
    except InvalidInputError as err:
        if debug:
            raise
        _print_error(err, debug=debug)
        ctx.exit(EXIT_INVALID)
    ctx.obj = Context(settings, debug=debug)


def missing_database(ctx: Context) -> Path | None:
    """The SQLite file the settings name when it does not exist yet (else None).

    Read-only commands use it to say "no database here" instead of quietly creating
    an empty one in whatever directory they were run from.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(ctx.settings.database_url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    return None if path.exists() else path


def require_database(ctx: Context) -> None:
    """Exit 2 when the configured SQLite database does not exist (nothing is created)."""
    path = missing_database(ctx)
    if path is not None:
        raise InvalidInputError(
            f"{path}: no database here (CAMPAIGNBOT_DATABASE_URL={ctx.settings.database_url})",
            hint="run this in the project folder `campaignbot run` uses, or pass "
            "--env-file /etc/campaignbot/env or CAMPAIGNBOT_DATABASE_URL",
        )


@contextlib.asynccontextmanager
async def open_store(ctx: Context) -> AsyncIterator[Database]:
    """The database from `CAMPAIGNBOT_DATABASE_URL`, migrated to the newest revision.

    Migrations run on every start (never `create_all`); the engine is disposed after.
    """
    from campaignbot.storage.database import open_database

    db = open_database(ctx.settings.database_url)
    try:
        await db.upgrade()
        yield db
    finally:
        await db.dispose()
