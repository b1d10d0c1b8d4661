"""`campaignbot check`: validate settings, the campaign file and templates."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import click

from campaignbot.campaign.model import Campaign
from campaignbot.cli.common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    Context,
    cli,
    err_console,
    pass_context,
)
from campaignbot.errors import CampaignbotError, InvalidInputError, Problem

#: A check takes the validated campaign (None if it failed) and returns problems.
Check = Callable[[Context, Campaign | None], list[Problem]]


def _check_templates(ctx: Context, campaign: Campaign | None) -> list[Problem]:
    if campaign is None:
        return []
    from campaignbot.email.template_check import check_templates

    return check_templates(ctx.settings, campaign)


def _check_web_pages(ctx: Context, campaign: Campaign | None) -> list[Problem]:
    """The public pages: template syntax and the per-language text catalogs."""
    import tomllib

    from jinja2 import Environment, TemplateSyntaxError

    folder = ctx.settings.templates / "web"
    if not folder.is_dir():
        return [Problem(str(folder), "", "web page templates not found")]
    problems = []
    env = Environment(autoescape=True)
    for path in sorted(folder.rglob("*.j2")):
        try:
            env.parse(path.read_text(encoding="utf-8"))
        except TemplateSyntaxError as err:
            problems.append(Problem(f"{path}:{err.lineno}", "", err.message or str(err)))
    for path in sorted((folder / "i18n").glob("*.toml")):
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            problems.append(Problem(str(path), "", f"invalid TOML: {err}"))
    return problems


def _probe(what: str, probe: Callable[[], Coroutine[Any, Any, None]]) -> list[Problem]:
    """Run `probe`; its error, if any, is one problem line for `what`."""
    from campaignbot.cli.common import run_async

    try:
        run_async(probe())
    except CampaignbotError as err:
        return [Problem(what, "", str(err))]
    return []


def _check_database(ctx: Context, campaign: Campaign | None) -> list[Problem]:
    """The database answers (read-only: migrations run at start, not here)."""
    from campaignbot.cli.common import missing_database
    from campaignbot.storage.database import open_database

    if missing_database(ctx) is not None:
        return []  # `run` creates it; connecting here would leave an empty file behind

    async def ping() -> None:
        db = open_database(ctx.settings.database_url)
        try:
            await db.ping()
        finally:
            await db.dispose()

    return _probe("database", ping)


def _check_transport(ctx: Context) -> tuple[bool, str]:
    """Connect and log in to the SMTP relay, sending nothing (or, without an SMTP host,
    prove the Maildir outbox is writable); (ok, what was tested [: why it failed])."""
    from campaignbot.delivery.smtp_session import planned
    from campaignbot.delivery.transport import SMTPTransport, make_transport

    smtp = ctx.settings.smtp
    transport = make_transport(smtp, ctx.settings.maildir)
    what = planned(smtp) if isinstance(transport, SMTPTransport) else transport.description

    async def login() -> None:
        try:
            await transport.check()
        finally:
            await transport.aclose()

    problems = _probe("transport", login)
    if problems:
        return False, f"{what}: {problems[0].message}"
    info = transport.session_info if isinstance(transport, SMTPTransport) else None
    if info is None:
        return True, f"{what}: OK"
    what = info.describe(f"{smtp.host}:{smtp.port}", smtp.username)
    if not info.ehlo_name_qualified:
        # this relay took it, but others answer "504 5.5.2 need fully-qualified hostname"
        return True, (
            f"{what}: OK (EHLO name {info.ehlo_name!r} is not fully qualified; "
            "set CAMPAIGNBOT_SMTP__LOCAL_HOSTNAME)"
        )
    return True, f"{what}: OK"


CHECKS: list[tuple[str, Check]] = [
    ("database", _check_database),
    ("templates", _check_templates),
    ("web pages", _check_web_pages),
]


@cli.command()
@click.option(
    "--smtp",
    "with_transport",
    is_flag=True,
    help="Also connect and log in to the SMTP relay (no mail is sent); exit 1 if it fails.",
)
@pass_context
def check(ctx: Context, with_transport: bool) -> None:
    """Validate settings, the campaign file and every template; list all problems."""
    checks = CHECKS
    problems: list[Problem] = []
    click.echo(f"OK settings (config {ctx.settings.config}, database {_safe_url(ctx)})")
    from campaignbot.settings import public_url_warnings

    for warning in public_url_warnings(ctx.settings):
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    campaign: Campaign | None = None
    try:
        campaign = ctx.campaign()
    except InvalidInputError as err:
        problems.extend(err.problems or [Problem(str(ctx.settings.config), "", str(err))])
    else:
        click.echo(f"OK {ctx.settings.config}: {len(campaign.events)} events")
    for name, run_check in checks:
        found = run_check(ctx, campaign)
        problems.extend(found)
        if campaign is not None and not found:
            click.echo(f"OK {name}" + _note(ctx, name))
    transport_ok, tested = _check_transport(ctx) if with_transport else (True, "")
    if transport_ok and tested:
        click.echo(f"OK transport {tested}")
    for problem in problems:
        err_console.print(str(problem), markup=False, highlight=False)
    if problems:
        err_console.print(f"{len(problems)} problem(s) found", markup=False)
        raise click.exceptions.Exit(EXIT_INVALID)
    if not transport_ok:
        # the settings are valid; the relay is unreachable or refused us: operational
        err_console.print(f"transport {tested}", markup=False, highlight=False)
        raise click.exceptions.Exit(EXIT_FAILURE)


def _note(ctx: Context, name: str) -> str:
    from campaignbot.cli.common import missing_database

    path = missing_database(ctx) if name == "database" else None
    return f" ({path} does not exist yet: `campaignbot run` creates it)" if path else ""


def _safe_url(ctx: Context) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(ctx.settings.database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable CAMPAIGNBOT_DATABASE_URL>"
