"""`campaignbot db upgrade`: bring the database schema to the newest revision."""

from __future__ import annotations

import click

from campaignbot.cli.common import Context, cli, handle_errors, open_store, pass_context, run_async


@cli.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command()
@pass_context
@handle_errors
def upgrade(ctx: Context) -> None:
    """Apply every pending migration (every command also does this on start)."""

    async def migrate() -> str:
        async with open_store(ctx) as db:  # open_store runs the migrations
            return db.display_url

    url = run_async(migrate())
    click.echo(f"OK {url}: schema is at the newest revision")
