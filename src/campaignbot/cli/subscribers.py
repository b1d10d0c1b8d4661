"""`campaignbot subscribers add|import|list|remove|export` (suppress: cli/suppress.py)."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from campaignbot.cli.common import (
    EXIT_INVALID,
    Context,
    cli,
    err_console,
    handle_errors,
    open_store,
    pass_context,
    require_database,
    run_async,
)
from campaignbot.errors import InvalidInputError, Problem
from campaignbot.subscribers.columns import parse_mapping, sniff_delimiter
from campaignbot.subscribers.model import (
    CSV_COLUMNS,
    CsvImport,
    Subscriber,
    SubscriberInput,
    SubscriberStatus,
    check_choices,
    csv_row,
    spreadsheet_safe,
    subscriber_json,
)
from campaignbot.subscribers.store import ImportCounts, SubscriberStore

#: Files at least this big get a progress bar (when stderr is a terminal).
_PROGRESS_MIN_BYTES = 256 * 1024
_STATUSES = [s.value for s in SubscriberStatus]


@cli.group()
def subscribers() -> None:
    """Manage subscribers: add, import, list, export, suppress, unsuppress, remove."""


def _choices(ctx: Context, allow_unknown: bool) -> tuple[list[str] | None, list[str] | None]:
    """The campaign's countries and topics, which subscribers may choose (as on the web
    form); None for both with --allow-unknown."""
    if allow_unknown:
        return None, None
    campaign = ctx.campaign()
    return campaign.countries, campaign.topics


_ALLOW_UNKNOWN = click.option(
    "--allow-unknown",
    is_flag=True,
    help="Accept countries and topics no event of the campaign uses.",
)


def campaign_defaults(ctx: Context) -> tuple[str, str]:
    """The campaign's default locale and time zone, for subscribers who give none."""
    info = ctx.campaign().campaign
    return info.default_locale, info.timezone.key


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--locale", help="Locale like 'fi' or 'pl' (default: the campaign's).")
@click.option("--timezone", help="IANA time zone (default: the campaign's).")
@click.option(
    "--country",
    "countries",
    multiple=True,
    metavar="CC",
    help="Two-letter country code to follow; repeat for more.",
)
@click.option(
    "--topic", "topics", multiple=True, metavar="SLUG", help="Topic to follow; repeat for more."
)
@_ALLOW_UNKNOWN
@pass_context
@handle_errors
def add(
    ctx: Context,
    email: str,
    name: str,
    locale: str | None,
    timezone: str | None,
    countries: tuple[str, ...],
    topics: tuple[str, ...],
    allow_unknown: bool,
) -> None:
    """Add one active subscriber. Without --country and --topic they follow everything."""
    if locale is None or timezone is None:
        default_locale, default_zone = campaign_defaults(ctx)
        locale, timezone = locale or default_locale, timezone or default_zone
    try:
        entry = SubscriberInput.create(
            email, name=name, locale=locale, timezone=timezone, countries=countries, topics=topics
        )
    except ValueError as err:
        raise InvalidInputError(str(err)) from None
    allowed_countries, allowed_topics = _choices(ctx, allow_unknown)
    try:
        check_choices(entry, countries=allowed_countries, topics=allowed_topics)
    except ValueError as err:
        raise InvalidInputError(f"{entry.email}: {err}") from None

    async def store_it() -> Subscriber:
        async with open_store(ctx) as db:
            return await SubscriberStore(db).add(entry, now=ctx.now(), source="cli")

    subscriber = run_async(store_it())
    click.echo(f"added {subscriber.email} (id {subscriber.id}, follows {_follows(subscriber)})")


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the valid rows and list the invalid ones (default: import nothing).",
)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="'COLUMN=name'",
    help="Read COLUMN as one of ours, e.g. 'Email Address=email'; 'COLUMN=' ignores it.",
)
@_ALLOW_UNKNOWN
@pass_context
@handle_errors
def import_(
    ctx: Context, file: Path, skip_invalid: bool, mapping: tuple[str, ...], allow_unknown: bool
) -> None:
    """Import (or update) subscribers from a UTF-8 CSV FILE.

    \b
    Header: email,name,locale,timezone,countries,topics
    countries and topics hold lists separated by ';' (FI;PL). Empty locale and
    timezone take the campaign's defaults; no countries and no topics means the
    subscriber follows everything. Fields may be separated by ',', ';' or tabs
    (Excel's choice in many locales); a BOM is fine. Mailchimp and listmonk
    exports are read as they are (listmonk's blocklisted rows are suppressed).
    Countries and topics must be ones the campaign uses, unless --allow-unknown.

    The import is one transaction. Problems are printed as FILE: row N: ..., where
    row numbers count the header as row 1 (the first data row is row 2). If any row
    is invalid or repeats an address, nothing is imported unless --skip-invalid is
    given. New addresses become active, with consent recorded as import:FILE.
    Importing the same file again changes nothing, and unsubscribed or bounced
    addresses are never re-activated or changed.
    """
    default_locale, default_zone = campaign_defaults(ctx)
    source = str(file)
    try:
        renames = parse_mapping(mapping)
    except ValueError as err:
        raise InvalidInputError(str(err)) from None
    allowed_countries, allowed_topics = _choices(ctx, allow_unknown)
    importer = CsvImport(
        source,
        default_locale=default_locale,
        default_timezone=default_zone,
        skip_invalid=skip_invalid,
        mapping=renames,
        countries=allowed_countries,
        topics=allowed_topics,
    )
    now = ctx.now()

    async def store_all(entries: Iterable[SubscriberInput]) -> ImportCounts:
        async with open_store(ctx) as db:
            store = SubscriberStore(db)
            counts = await store.upsert_many(entries, now=now, source=f"import:{file.name}")
            for email in importer.blocklisted:
                blocked = SubscriberInput.create(
                    email, locale=default_locale, timezone=default_zone
                )
                await store.suppress(blocked, reason=f"blocklisted in {file.name}", now=now)
            return counts

    try:
        with (
            file.open("rb") as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text,
            _progress(file.stat().st_size) as advance,
        ):
            records = _records(text, lambda: advance(raw.tell()), source)
            counts = run_async(store_all(importer.rows(records)))
    except InvalidInputError as err:
        if not err.problems:
            raise
        _print_problems(err.problems)
        err_console.print(
            f"{len(err.problems)} problem(s); nothing imported "
            "(fix them, or use --skip-invalid to import the valid rows)",
            markup=False,
        )
        raise click.exceptions.Exit(EXIT_INVALID) from None
    _print_problems(importer.problems)
    blocked = f", {len(importer.blocklisted)} suppressed" if importer.blocklisted else ""
    click.echo(
        f"{file}: {counts.added} added, {counts.updated} updated, "
        f"{counts.unchanged} unchanged, {len(importer.problems)} skipped{blocked}"
    )


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        err_console.print(str(problem), markup=False, highlight=False)


def _records(text: TextIO, report: Callable[[], None], source: str) -> Iterator[list[str]]:
    """CSV records streamed from the file; calls `report` every 1,000 rows.

    The delimiter (`,`, `;` or tab) is read off the header line."""
    line = 1
    try:
        header = text.readline()
        reader = csv.reader(itertools.chain([header], text), delimiter=sniff_delimiter(header))
        for count, cells in enumerate(reader):
            line = reader.line_num + 1
            if count % 1000 == 0:
                report()
            yield cells
    except (UnicodeDecodeError, csv.Error) as err:
        raise InvalidInputError(
            [Problem(source, f"line {line}", f"cannot read as CSV: {err}")]
        ) from err
    report()


@contextlib.contextmanager
def _progress(total_bytes: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for large files when it is a terminal; else a no-op."""
    if total_bytes < _PROGRESS_MIN_BYTES or not err_console.is_terminal:
        yield lambda _done: None
        return
    columns = (
        TextColumn("importing"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("import", total=total_bytes)
        yield lambda done: progress.update(task, completed=done)


@subscribers.command("list")
@click.option("--status", type=click.Choice(_STATUSES), help="Only this status.")
@click.option("--country", metavar="CC", help="Only those who chose this country.")
@click.option("--topic", metavar="SLUG", help="Only those who chose this topic.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_context
@handle_errors
def list_(
    ctx: Context, status: str | None, country: str | None, topic: str | None, as_json: bool
) -> None:
    """List subscribers. --country and --topic match what a subscriber chose; those who
    follow everything are not included."""
    wanted = SubscriberStatus(status) if status else None
    require_database(ctx)

    async def fetch() -> list[Subscriber]:
        async with open_store(ctx) as db:
            store = SubscriberStore(db)
            return await store.list_subscribers(status=wanted, country=country, topic=topic)

    found = run_async(fetch())
    if as_json:
        click.echo(json.dumps([_as_json(s) for s in found], indent=2, ensure_ascii=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # pipes and files: don't cut addresses
    if not found:
        console.print("No subscribers match.")
        return
    table = Table(title=f"{len(found)} subscriber{'' if len(found) == 1 else 's'}")
    for column in ("id", "email", "name", "locale", "timezone", "follows", "status"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for s in found:
        table.add_row(str(s.id), s.email, s.name, s.locale, s.timezone, _follows(s), s.status.value)
    console.print(table, markup=False, highlight=False)


def _follows(subscriber: Subscriber) -> str:
    chosen = sorted(subscriber.countries) + sorted(subscriber.topics)
    if subscriber.follows_all:
        return "everything" + (f" ({', '.join(chosen)})" if chosen else "")
    return ", ".join(chosen)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _as_json(s: Subscriber) -> dict[str, object]:
    """The API's shape, plus the row id and its times."""
    times = {"created_at": _iso(s.created_at), "updated_at": _iso(s.updated_at)}
    return {"id": s.id, **subscriber_json(s), **times}


@subscribers.command()
@click.argument("email")
@pass_context
@handle_errors
def remove(ctx: Context, email: str) -> None:
    """Erase a subscriber and their delivery history (GDPR erasure). To stop mail but
    keep the address from being imported or signed up again, use `suppress`."""
    require_database(ctx)

    async def delete() -> bool:
        async with open_store(ctx) as db:
            return await SubscriberStore(db).remove(email)

    if not run_async(delete()):
        raise InvalidInputError(f"{email}: no such subscriber")
    click.echo(
        f"removed {email} and its delivery history (erased; a later import may add it "
        "again: `subscribers suppress` keeps it out)"
    )


@subscribers.command()
@click.option(
    "--status",
    type=click.Choice([*_STATUSES, "all"]),
    default=SubscriberStatus.ACTIVE.value,
    show_default=True,
    help="Which subscribers; the default keeps people who left out of files that may be "
    "imported elsewhere.",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Exact values: no `'` before cells a spreadsheet would run as formulas.",
)
@pass_context
@handle_errors
def export(ctx: Context, status: str, raw: bool) -> None:
    """Write subscribers as CSV to stdout, in the format `subscribers import` reads.

    Spreadsheet-safe unless --raw: a cell starting with = + - @ gets a leading `'`
    (import removes it again).
    """
    wanted = None if status == "all" else SubscriberStatus(status)
    cell = (lambda value: value) if raw else spreadsheet_safe
    require_database(ctx)
    writer = csv.writer(sys.stdout, lineterminator="\n")

    async def write_all() -> None:
        async with open_store(ctx) as db:
            writer.writerow(CSV_COLUMNS)
            async with contextlib.aclosing(SubscriberStore(db).iterate(status=wanted)) as rows:
                async for subscriber in rows:
                    writer.writerow([cell(value) for value in csv_row(subscriber)])

    run_async(write_all())
