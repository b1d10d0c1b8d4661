"""`campaignbot admin add-user|add-token`: dashboard users and API tokens.

Both live in `CAMPAIGNBOT_ADMIN__USERS_FILE` (default `var/admin-users.toml`):
passwords as argon2id hashes, tokens as SHA-256 digests. A token is printed once.
"""

from __future__ import annotations

import sys

import click

from campaignbot.cli.common import Context, cli, handle_errors, pass_context
from campaignbot.errors import InvalidInputError
from campaignbot.web.dashboard.accounts import SCOPES, add_token, add_user


@cli.group("admin")
def admin_group() -> None:
    """Dashboard users and API tokens (the admin listener's /admin and /api)."""


@admin_group.command("add-user")
@click.argument("user")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin (for scripts) instead of asking.",
)
@pass_context
@handle_errors
def add_user_command(ctx: Context, user: str, password_stdin: bool) -> None:
    """Add a dashboard user, or set a new password (which ends their open sessions)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise InvalidInputError("no terminal to ask for the password: use --password-stdin")
    path = ctx.settings.admin.users_file
    new = add_user(path, user, password, now=ctx.now())
    click.echo(f"{'added' if new else 'updated'} user {user} in {path}")


@admin_group.command("add-token")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(list(SCOPES)),
    help="What the token may do (repeatable). subscribers:consent allows adding people "
    'as confirmed ("confirmed": true) because the caller already holds their consent.',
)
@pass_context
@handle_errors
def add_token_command(ctx: Context, name: str, scopes: tuple[str, ...]) -> None:
    """Create an API bearer token; it is printed once and stored only as a hash."""
    path = ctx.settings.admin.users_file
    token = add_token(path, name, list(scopes), now=ctx.now())
    click.echo(token)
    click.echo(
        f"token {name} ({', '.join(scopes)}) stored hashed in {path}; it is shown only now",
        err=True,
    )
