"""Pure subscriber model: validation, normalisation and CSV rows; no I/O."""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email

from campaignbot.errors import InvalidInputError, Problem
from campaignbot.subscribers.columns import BLOCKLISTED
from campaignbot.subscribers.columns import parse_header as columns_header

#: The CSV header of `subscribers import` and `subscribers export`, in this order.
CSV_COLUMNS = ("email", "name", "locale", "timezone", "countries", "topics")

_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_TOPIC_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# column widths in tables.subscribers; PostgreSQL rejects longer values, SQLite would not
_MAX_NAME, _MAX_COUNTRIES, _MAX_TOPICS = 200, 400, 2000


def new_link_nonce() -> str:
    """A fresh random link nonce: 72 bits, 12 URL-safe characters."""
    return secrets.token_urlsafe(9)


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up on the web, has not confirmed yet (double opt-in)
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"  # reported our mail as spam: unsubscribed at once
    SUPPRESSED = "suppressed"  # do not contact: kept by `subscribers suppress`, never re-added


#: Statuses an import or a repeated sign-up must never change.
FINAL_STATUSES = frozenset(
    {
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.COMPLAINED,
        SubscriberStatus.SUPPRESSED,
    }
)


@dataclass(frozen=True)
class Subscriber:
    """One stored subscriber."""

    id: int
    email: str
    name: str
    locale: str
    timezone: str
    countries: frozenset[str]
    topics: frozenset[str]
    follows_all: bool
    status: SubscriberStatus
    consent_at: datetime | None
    consent_source: str
    created_at: datetime
    updated_at: datetime
    hard_bounces: int = 0
    #: in every link token; replaced on unsubscribe and re-subscribe (see email/tokens.py)
    link_nonce: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class SubscriberInput:
    """Validated, normalised fields of a subscriber as entered (CLI, CSV or web form)."""

    email: str  # email-validator's normalised form
    name: str
    locale: str  # Babel's canonical form, e.g. "pt_BR"
    timezone: str  # IANA name
    countries: frozenset[str]
    topics: frozenset[str]
    follows_all: bool

    @property
    def email_key(self) -> str:
        return self.email.lower()

    @classmethod
    def create(
        cls,
        email: str,
        *,
        name: str = "",
        locale: str,
        timezone: str,
        countries: Iterable[str] = (),
        topics: Iterable[str] = (),
        follows_all: bool | None = None,
    ) -> SubscriberInput:
        """Validate and normalise; raises ValueError with a one-line reason.

        `follows_all` defaults to True exactly when no country and no topic is given.
        """
        country_set = normalize_countries(countries)
        topic_set = normalize_topics(topics)
        return cls(
            email=normalize_email(email),
            name=normalize_name(name),
            locale=normalize_locale(locale),
            timezone=normalize_timezone(timezone),
            countries=country_set,
            topics=topic_set,
            follows_all=(not country_set and not topic_set) if follows_all is None else follows_all,
        )


def normalize_email(email: str) -> str:
    """email-validator's normalised form (syntax only: no DNS lookup)."""
    text = email.strip()
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as err:
        reason = str(err).rstrip(".")
        raise ValueError(f"invalid email {text!r} ({reason[:1].lower()}{reason[1:]})") from None


def email_key(email: str) -> str:
    """The case-insensitive lookup key of an address, valid or not."""
    try:
        return normalize_email(email).lower()
    except ValueError:
        return email.strip().lower()


def normalize_name(name: str) -> str:
    name = " ".join(name.split())  # also turns tabs and newlines into single spaces
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"name {name!r} contains a control character")
    if len(name) > _MAX_NAME:
        raise ValueError(f"name is longer than {_MAX_NAME} characters")
    return name


@functools.lru_cache(maxsize=512)
def normalize_locale(locale: str) -> str:
    """Babel's canonical spelling: `en-gb` and `en_GB` both become `en_GB`."""
    text = locale.strip()
    try:
        return str(Locale.parse(text.replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"unknown locale {text!r}") from None


@functools.lru_cache(maxsize=512)
def normalize_timezone(timezone: str) -> str:
    text = timezone.strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {text!r} (use an IANA name like 'Europe/Helsinki')"
        ) from None
    return text


def split_list(value: str) -> list[str]:
    """A `;`-separated CSV cell or option value; blanks are dropped."""
    return [item.strip() for item in value.split(";") if item.strip()]


def normalize_countries(values: Iterable[str]) -> frozenset[str]:
    """Two-letter ISO codes, upper case; each value may itself be `FI;PL`."""
    found = set()
    for value in values:
        for item in split_list(value):
            code = item.upper()
            if not _COUNTRY_RE.fullmatch(code):
                raise ValueError(f"country must be a two-letter ISO code like 'FI', got {item!r}")
            found.add(code)
    if len(encode_list(found)) > _MAX_COUNTRIES:
        raise ValueError(f"too many countries ({len(found)})")
    return frozenset(found)


def normalize_topics(values: Iterable[str]) -> frozenset[str]:
    """Lower-case slugs like `mine-ban-treaty`; each value may itself be `a;b`."""
    found = set()
    for value in values:
        for item in split_list(value):
            topic = item.lower()
            if not _TOPIC_RE.fullmatch(topic):
                raise ValueError(
                    f"topic must be a lowercase slug like 'mine-ban-treaty', got {item!r}"
                )
            found.add(topic)
    if len(encode_list(found)) > _MAX_TOPICS:
        raise ValueError(f"too many topics ({len(found)})")
    return frozenset(found)


def encode_list(items: Iterable[str]) -> str:
    """Stored form: sorted and wrapped in `;` (`;FI;PL;`), so `LIKE '%;FI;%'` matches exactly."""
    ordered = sorted(items)
    return f";{';'.join(ordered)};" if ordered else ""


def decode_list(stored: str) -> frozenset[str]:
    return frozenset(item for item in stored.split(";") if item)


#: a cell starting with one of these is a formula to Excel, LibreOffice and Sheets
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """`cell` as a spreadsheet shows it literally: a leading `'` before a cell that
    would be read as a formula (`=HYPERLINK(...)`, and addresses may start with `=`,
    `+`, `-`); OWASP's advice for CSV injection. `unguard` undoes it on import."""
    return f"'{cell}" if cell.startswith(_FORMULA_START) else cell


def unguard(cell: str) -> str:
    """A cell written by `spreadsheet_safe`, as it was (other cells unchanged)."""
    if cell.startswith("'") and cell[1:].startswith(_FORMULA_START):
        return cell[1:]
    return cell


def csv_row(subscriber: Subscriber | SubscriberInput) -> list[str]:
    """The CSV cells of a subscriber, in `CSV_COLUMNS` order."""
    return [
        subscriber.email,
        subscriber.name,
        subscriber.locale,
        subscriber.timezone,
        ";".join(sorted(subscriber.countries)),
        ";".join(sorted(subscriber.topics)),
    ]


def parse_header(
    cells: Sequence[str], mapping: Mapping[str, str | None] | None = None
) -> dict[str, int]:
    """Column name -> index; `email` is required, the others optional, in any order.

    Mailchimp and listmonk names are accepted, and `mapping` renames others."""
    return columns_header(cells, mapping)


def parse_row(
    cells: Sequence[str],
    columns: dict[str, int],
    *,
    default_locale: str,
    default_timezone: str,
    width: int | None = None,
) -> SubscriberInput:
    """One CSV data row; empty locale and time zone take the campaign's defaults."""
    expected = width if width is not None else len(columns)
    if len(cells) != expected:
        raise ValueError(f"expected {expected} fields, got {len(cells)}")

    def cell(name: str) -> str:
        return unguard(cells[columns[name]].strip()) if name in columns else ""

    # Mailchimp splits the name in two
    name = cell("name") or " ".join(p for p in (cell("first_name"), cell("last_name")) if p)
    return SubscriberInput.create(
        cell("email"),
        name=name,
        locale=cell("locale") or default_locale,
        timezone=cell("timezone") or default_timezone,
        countries=[cell("countries")],
        topics=[cell("topics")],
    )


def check_choices(
    entry: SubscriberInput,
    *,
    countries: Collection[str] | None,
    topics: Collection[str] | None,
) -> None:
    """ValueError naming the first country or topic not among the campaign's choices
    (None: anything well-formed is accepted)."""
    for what, chosen, allowed in (
        ("country", entry.countries, countries),
        ("topic", entry.topics, topics),
    ):
        unknown = sorted(chosen - set(allowed)) if allowed is not None else []
        if unknown:
            offered = ", ".join(sorted(allowed or ())) or "none"
            raise ValueError(
                f"unknown {what} {unknown[0]!r} (the campaign's: {offered}; "
                "--allow-unknown accepts it)"
            )


class CsvImport:
    """Validates CSV records as they stream by and collects row-numbered problems.

    Row numbers count the header as row 1, so the first data row is row 2. `rows()`
    yields the valid rows; once a row is invalid it stops yielding (unless
    `skip_invalid`), and at the end it raises InvalidInputError listing every problem,
    so a caller writing inside a transaction rolls everything back.
    """

    def __init__(
        self,
        source: str,
        *,
        default_locale: str,
        default_timezone: str,
        skip_invalid: bool = False,
        mapping: Mapping[str, str | None] | None = None,
        countries: Collection[str] | None = None,
        topics: Collection[str] | None = None,
    ) -> None:
        self.source = source
        self.mapping = mapping
        # the campaign's choices; None accepts any well-formed value (--allow-unknown)
        self.countries = None if countries is None else frozenset(countries)
        self.topics = None if topics is None else frozenset(topics)
        #: rows listmonk marked blocklisted: never imported as active, to be suppressed
        self.blocklisted: list[str] = []
        self.default_locale = default_locale
        self.default_timezone = default_timezone
        self.skip_invalid = skip_invalid
        self.problems: list[Problem] = []
        # email key -> first row; the one structure that grows with the file (~100 B/row)
        self._seen: dict[str, int] = {}

    def _problem(self, row: int, message: str) -> None:
        self.problems.append(Problem(self.source, f"row {row}", message))

    def check_choices(self, entry: SubscriberInput) -> None:
        """ValueError for a country or topic the campaign does not offer."""
        check_choices(entry, countries=self.countries, topics=self.topics)

    def rows(self, records: Iterable[Sequence[str]]) -> Iterator[SubscriberInput]:
        columns: dict[str, int] | None = None
        width = 0
        for row, cells in enumerate(records, start=1):
            if columns is None:
                width = len(cells)
                try:
                    columns = parse_header(cells, self.mapping)
                except ValueError as err:
                    # without a usable header no row can be read: fatal even when skipping
                    raise InvalidInputError(
                        [Problem(self.source, f"row {row}", str(err))]
                    ) from None
                continue
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            try:
                entry = parse_row(
                    cells,
                    columns,
                    default_locale=self.default_locale,
                    default_timezone=self.default_timezone,
                    width=width,
                )
                self.check_choices(entry)
            except ValueError as err:
                self._problem(row, str(err))
                continue
            if "listmonk_status" in columns and cells[columns["listmonk_status"]].strip() == (
                BLOCKLISTED
            ):
                self.blocklisted.append(entry.email)
                continue
            first = self._seen.setdefault(entry.email_key, row)
            if first != row:
                self._problem(row, f"duplicate of row {first} ({entry.email})")
                continue
            if not self.problems or self.skip_invalid:
                yield entry
        if columns is None:
            raise InvalidInputError(
                [Problem(self.source, "", f"empty file; expected header {','.join(CSV_COLUMNS)}")]
            )
        if self.problems and not self.skip_invalid:
            raise InvalidInputError(
                self.problems, hint="nothing was imported; fix the rows or use --skip-invalid"
            )


def subscriber_json(s: Subscriber) -> dict[str, Any]:
    """The API's (and `subscribers list --json`'s) shape of a subscriber."""
    return {
        "email": s.email,
        "name": s.name,
        "locale": s.locale,
        "timezone": s.timezone,
        "countries": sorted(s.countries),
        "topics": sorted(s.topics),
        "follows_all": s.follows_all,
        "status": s.status.value,
        "consent_at": s.consent_at.isoformat() if s.consent_at else None,
        "consent_source": s.consent_source,
        "created_at": s.created_at.isoformat(),
        "updated_at": s.updated_at.isoformat(),
    }
