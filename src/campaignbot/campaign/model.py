"""The campaign file: pydantic models for `config/campaign.toml` and its loader."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date, datetime, time, timedelta
from email.headerregistry import Address
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from campaignbot.campaign.localtime import dst_problem
from campaignbot.errors import ConfigError, InvalidInputError, Problem

# fullmatch everywhere: `$` also matches before a final "\n", which would put a bare LF
# into a mail header (an event id is an attachment file name)
_OFFSET_RE = re.compile(r"(?:0|([1-9][0-9]{0,4})([wdhm]))")
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}

#: the languages the campaign ships in (templates, web pages, event texts)
LOCALES = ("en", "fi", "pl", "et", "lv", "lt")


class Offset(BaseModel):
    """A reminder offset before an event: `"7d"`, `"2h"`, `"0"` (at the event)."""

    model_config = ConfigDict(frozen=True)

    amount: int
    unit: str  # one of w, d, h, m; "" for "0"

    @property
    def label(self) -> str:
        return f"{self.amount}{self.unit}" if self.amount else "0"

    @property
    def is_calendar(self) -> bool:
        """Week and day offsets count calendar days in the event's zone."""
        return self.unit in ("w", "d")

    @property
    def days(self) -> int:
        return self.amount * 7 if self.unit == "w" else self.amount if self.unit == "d" else 0

    @property
    def duration(self) -> timedelta:
        """Elapsed time for hour and minute offsets."""
        if self.unit == "h":
            return timedelta(hours=self.amount)
        if self.unit == "m":
            return timedelta(minutes=self.amount)
        return timedelta(0)

    def __str__(self) -> str:
        return self.label


def parse_offset(value: object) -> Offset:
    """Parse `"<n>w|d|h|m"` or `"0"`; raises ValueError with a one-line reason."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        value = "0"
    if not isinstance(value, str):
        raise ValueError(f"offset must be a string like '1d', got {value!r}")
    match = _OFFSET_RE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"bad offset {value!r}: use '<n>w', '<n>d', '<n>h', '<n>m' or '0'")
    if match.group(1) is None:
        return Offset(amount=0, unit="")
    return Offset(amount=int(match.group(1)), unit=match.group(2))


def _offset(value: object) -> Offset:
    return value if isinstance(value, Offset) else parse_offset(value)


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError(f"time zone must be an IANA name like 'Europe/Helsinki', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _locale(name: str) -> str:
    try:
        Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"unknown locale {name!r}") from None
    return name


def _country(code: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", code):
        raise ValueError(f"country must be a two-letter ISO code like 'FI', got {code!r}")
    return code.upper()


def _topic(name: str) -> str:
    if not _SLUG_RE.fullmatch(name):
        raise ValueError(f"topic must be a lowercase slug like 'mine-ban-treaty', got {name!r}")
    return name


def _no_control_chars(text: str) -> str:
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in text):
        raise ValueError("contains a control character")
    return text


def _localized(value: object) -> dict[str, str]:
    """A string, or a table of locale -> string; stored as a table ("" = any locale)."""
    if isinstance(value, str):
        table = {"": value}
    elif isinstance(value, dict):
        table = {}
        for key, text in value.items():
            if not isinstance(text, str):
                raise ValueError(f"{_key(key)}: must be a string")
            table[key if key == "" else _locale(key)] = text  # "": any locale
    else:
        raise ValueError("must be a string or a table of locale = string")
    if not table or any(not text.strip() for text in table.values()):
        raise ValueError("must not be empty")
    for text in table.values():
        _no_control_chars(text)
    return table


# serialized as written ("1d"), so a dumped event validates again (event snapshots)
OffsetField = Annotated[
    Offset,
    Field(json_schema_extra={"format": "offset"}),
    PlainSerializer(str, return_type=str, when_used="json"),
]
LocalizedText = dict[str, str]


def localize(text: LocalizedText, locale: str, default_locale: str) -> str:
    """Pick `locale`, then its language, then the default locale, then any."""
    for key in (locale, locale.split("_")[0].split("-")[0], default_locale, ""):
        if key in text:
            return text[key]
    return next(iter(text.values()))


class Status(StrEnum):
    SCHEDULED = "scheduled"
    POSTPONED = "postponed"
    CANCELLED = "cancelled"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Audience(_Strict):
    """Who follows an event; empty means everyone."""

    countries: tuple[Annotated[str, AfterValidator(_country)], ...] = ()
    topics: tuple[Annotated[str, AfterValidator(_topic)], ...] = ()

    @property
    def is_everyone(self) -> bool:
        return not self.countries and not self.topics

    def matches(self, countries: set[str], topics: set[str], *, follows_all: bool) -> bool:
        """A subscriber follows the event via a country, a topic, or everything."""
        return (
            self.is_everyone
            or follows_all
            or bool(countries & set(self.countries))
            or bool(topics & set(self.topics))
        )


class Action(_Strict):
    text: LocalizedText
    url: str

    _text = field_validator("text", mode="before")(lambda v: _localized(v))

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return _http_url(url)


def _http_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/$.?#][^\s]*", url) or _no_control_chars(url) != url:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


class Event(_Strict):
    """One pending political event; `id` is its identity across config edits."""

    id: str
    title: LocalizedText
    timezone: ZoneInfo
    when: datetime | date
    summary: LocalizedText | None = None
    audience: Audience = Audience()
    action: Action | None = None
    links: tuple[Annotated[str, AfterValidator(_http_url)], ...] = ()
    reminders: tuple[OffsetField, ...]
    status: Status = Status.SCHEDULED
    #: how long a timed event lasts, for the calendar's DTEND ("2h", "90m", "1d")
    duration: OffsetField | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_campaign(cls, data: Any, info: ValidationInfo) -> Any:
        # Fields default to the campaign's values; the context carries those in.
        if isinstance(data, dict) and info.context:
            data = dict(data)
            if "timezone" not in data:
                data["timezone"] = info.context["timezone"]
            if "reminders" not in data:
                data["reminders"] = info.context["reminders"]
        return data

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _SLUG_RE.fullmatch(value):
            raise ValueError(f"id must be a lowercase slug like 'fi-final-vote', got {value!r}")
        return value

    _title = field_validator("title", mode="before")(lambda v: _localized(v))
    _summary = field_validator("summary", mode="before")(
        lambda v: None if v is None else _localized(v)
    )

    @field_validator("timezone", mode="before")
    @classmethod
    def _check_timezone(cls, value: object) -> ZoneInfo:
        if value is None:
            raise ValueError("missing time zone")
        return value if isinstance(value, ZoneInfo) else _zone(value)

    @field_validator("when", mode="before")
    @classmethod
    def _check_when(cls, value: object, info: ValidationInfo) -> datetime | date:
        if isinstance(value, str):
            try:
                value = (
                    datetime.fromisoformat(value)
                    if "T" in value or " " in value
                    else date.fromisoformat(value)
                )
            except ValueError:
                raise ValueError(
                    f"bad date {value!r}: use 2025-06-17T10:00:00+03:00, "
                    "2025-06-17T10:00:00 or 2025-06-17"
                ) from None
        if isinstance(value, datetime):
            zone = info.data.get("timezone")
            if not isinstance(zone, ZoneInfo):
                if value.tzinfo is None:
                    # the zone itself failed; its error is reported on `timezone`
                    raise ValueError("a local date and time needs a valid time zone")
                return value
            if value.tzinfo is None:
                # The one place a local time meets its zone: from here on `when` is
                # aware, and nobody re-zones it. A time in a DST gap or fold is refused
                # rather than guessed (it would move every reminder by the jump).
                problem = dst_problem(value, zone)
                if problem is not None:
                    raise ValueError(problem)
                return value.replace(tzinfo=zone)
            return value.astimezone(zone)
        if isinstance(value, date):
            return value
        raise ValueError(f"must be a date or date-time, got {value!r}")

    _reminders = field_validator("reminders", mode="before")(
        lambda v: [_offset(x) for x in v] if isinstance(v, list | tuple) else v
    )

    @field_validator("duration", mode="before")
    @classmethod
    def _check_duration(cls, value: object) -> Offset | None:
        if value is None:
            return None
        offset = _offset(value)
        if offset.amount == 0:
            raise ValueError("duration must be longer than 0, like '2h'")
        return offset

    @field_validator("reminders")
    @classmethod
    def _unique_reminders(cls, value: tuple[Offset, ...]) -> tuple[Offset, ...]:
        labels = [o.label for o in value]
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate reminder offsets in {labels}")
        return value

    @property
    def all_day(self) -> bool:
        return not isinstance(self.when, datetime)

    @property
    def length(self) -> timedelta:
        """The event's length for calendars: `duration`, else an hour (a day if all-day)."""
        if self.duration is None:
            return timedelta(days=1) if self.all_day else timedelta(hours=1)
        return timedelta(days=self.duration.days) + self.duration.duration

    def title_for(self, locale: str, default_locale: str) -> str:
        return localize(self.title, locale, default_locale)

    def summary_for(self, locale: str, default_locale: str) -> str:
        return localize(self.summary, locale, default_locale) if self.summary else ""


class CampaignInfo(_Strict):
    """The `[campaign]` table. `name`, `sender_name` and `organization` are a
    string or a table of locale -> string; `name` reads as the default locale's."""

    model_config = ConfigDict(populate_by_name=True)

    names: LocalizedText = Field(alias="name")
    sender: str
    #: the display name in From:, per locale; the one in `sender` when unset
    sender_name: LocalizedText | None = None
    #: the footer's organisation: name and postal address (CAN-SPAM, bulk senders)
    organization: LocalizedText | None = None
    #: the privacy notice; the web app's own /privacy when unset
    privacy_url: str | None = None
    default_locale: str = "en"
    timezone: ZoneInfo
    send_at: time = time(9, 0)
    reminders: tuple[OffsetField, ...] = (parse_offset("7d"), parse_offset("1d"), parse_offset("0"))
    catch_up: OffsetField = parse_offset("6h")
    #: how long after its event's start the '0' reminder may finish its first attempts
    stale_after: OffsetField = parse_offset("15m")
    topics: tuple[Annotated[str, AfterValidator(_topic)], ...] = ()

    _names = field_validator("names", mode="before")(lambda v: _localized(v))
    _sender_name = field_validator("sender_name", mode="before")(
        lambda v: None if v is None else _one_line(_localized(v))
    )
    _organization = field_validator("organization", mode="before")(
        lambda v: None if v is None else _localized(v)
    )
    _privacy_url = field_validator("privacy_url")(lambda v: None if v is None else _http_url(v))
    _locale = field_validator("default_locale")(_locale)
    _tz = field_validator("timezone", mode="before")(
        lambda v: v if isinstance(v, ZoneInfo) else _zone(v)
    )
    _reminders = field_validator("reminders", mode="before")(
        lambda v: [_offset(x) for x in v] if isinstance(v, list | tuple) else v
    )
    _catch_up = field_validator("catch_up", "stale_after", mode="before")(_offset)

    @field_validator("send_at", mode="before")
    @classmethod
    def _check_send_at(cls, value: object) -> time:
        if isinstance(value, time):
            return value
        if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value):
            hour, minute = map(int, value.split(":"))
            if hour < 24 and minute < 60:
                return time(hour, minute)
        raise ValueError(f"send_at must be a local time like '09:00', got {value!r}")

    @field_validator("sender")
    @classmethod
    def _check_sender(cls, value: str) -> str:
        _no_control_chars(value)
        if "\n" in value or "\r" in value:
            raise ValueError("sender must be one line")
        _name, addr = parseaddr(value)
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", addr):
            raise ValueError(f"sender must be 'Name <address@domain>', got {value!r}")
        return value

    @property
    def name(self) -> str:
        """The campaign's name in the default locale."""
        return localize(self.names, self.default_locale, self.default_locale)

    def name_for(self, locale: str) -> str:
        """The campaign's name in `locale` (falling back like event titles)."""
        return localize(self.names, locale, self.default_locale)

    def sender_name_for(self, locale: str) -> str:
        """The From: display name in `locale`; the name in `sender` when unset."""
        if self.sender_name is None:
            return self.sender_address.display_name
        return localize(self.sender_name, locale, self.default_locale)

    def organization_for(self, locale: str) -> str:
        """The organisation's name and postal address in `locale`; "" when unset."""
        if self.organization is None:
            return ""
        return localize(self.organization, locale, self.default_locale)

    def privacy_link(self, public_url: str) -> str:
        """`privacy_url`, else the web app's own privacy page under `public_url`."""
        return self.privacy_url or f"{public_url.rstrip('/')}/privacy"

    @property
    def sender_address(self) -> Address:
        name, addr = parseaddr(self.sender)
        user, domain = addr.rsplit("@", 1)
        return Address(display_name=name, username=user, domain=domain)

    @property
    def catch_up_duration(self) -> timedelta:
        return timedelta(days=self.catch_up.days) + self.catch_up.duration

    @property
    def stale_after_duration(self) -> timedelta:
        return timedelta(days=self.stale_after.days) + self.stale_after.duration


def _one_line(table: dict[str, str]) -> dict[str, str]:
    if any("\n" in text or "\t" in text for text in table.values()):
        raise ValueError("must be one line")
    return table


class UnknownEventError(InvalidInputError):
    """No event with this id in the campaign (bad input: the CLI exits 2)."""


class Campaign(_Strict):
    """A whole campaign file."""

    campaign: CampaignInfo
    events: tuple[Event, ...] = ()

    def event(self, event_id: str) -> Event:
        for event in self.events:
            if event.id == event_id:
                return event
        known = ", ".join(e.id for e in self.events)
        raise UnknownEventError(f"unknown event {event_id!r} (known: {known})")

    @property
    def locales(self) -> list[str]:
        """Locales the campaign's texts are written in, default first."""
        found = {self.campaign.default_locale}
        for event in self.events:
            found.update(k for k in event.title if k)
        return sorted(found, key=lambda loc: (loc != self.campaign.default_locale, loc))

    @property
    def countries(self) -> list[str]:
        return sorted({c for e in self.events for c in e.audience.countries})

    @property
    def topics(self) -> list[str]:
        return sorted(
            set(self.campaign.topics) | {t for e in self.events for t in e.audience.topics}
        )


def _place(loc: tuple[int | str, ...]) -> str:
    place = ""
    for part in loc:
        if isinstance(part, int):
            place += f"[{part}]"
        elif part.startswith(("function-", "lambda")) or part in ("str", "dict[str,str]"):
            continue  # pydantic's internal validator names say nothing to an organizer
        else:
            part = _key(part)
            place += f".{part}" if place else part
    return place


def _key(name: str) -> str:
    """A key as written in TOML; quoted and escaped when it is not a plain word.

    A quoted TOML key may hold any character (`"\r" = 1`): printed raw it would break
    the one-line error.
    """
    if name and name.isprintable() and not any(c in name for c in " .\"'[]"):
        return name
    return json.dumps(name)


def _message(error: Any) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing"
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:]


def _send_at_problems(
    event: Event, info: CampaignInfo, *, source: str, index: int
) -> list[Problem]:
    """An all-day event's reminders land at `send_at` local time on their days: each must exist once."""
    if isinstance(event.when, datetime):
        return []
    days = sorted({event.when - timedelta(days=o.days) for o in event.reminders}, reverse=True)
    problems = []
    for day in days:
        problem = dst_problem(datetime.combine(day, info.send_at), event.timezone)
        if problem is not None:
            problems.append(
                Problem(source, f"events[{index}].when", f"send_at {problem}; move send_at")
            )
    return problems


def parse_campaign(data: dict[str, Any], *, source: str) -> Campaign:
    """Validate a decoded campaign file; every problem becomes one `Problem`."""
    problems: list[Problem] = []
    info: CampaignInfo | None = None
    raw_campaign = data.get("campaign")
    if raw_campaign is not None and not isinstance(raw_campaign, dict):
        # `campaign = "x"`: not a table, so nothing inside it can be read
        problems.append(Problem(source, "campaign", "must be a table [campaign]"))
    else:
        try:
            info = CampaignInfo.model_validate(raw_campaign if raw_campaign is not None else {})
        except ValidationError as err:
            for e in err.errors():
                problems.append(Problem(source, _place(("campaign", *e["loc"])), _message(e)))
    raw_events = data.get("events", [])
    for key in data:
        if key not in ("campaign", "events"):
            problems.append(Problem(source, _key(key), "unknown key"))
    if not isinstance(raw_events, list):
        problems.append(Problem(source, "events", "must be an array of tables [[events]]"))
        raw_events = []
    context: dict[str, Any] = {
        "timezone": info.timezone
        if info
        else (raw_campaign.get("timezone") if isinstance(raw_campaign, dict) else None),
        "reminders": list(info.reminders) if info else ["0"],
    }
    events: list[Event] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_events):
        try:
            event = Event.model_validate(raw, context=context)
        except ValidationError as err:
            for e in err.errors():
                loc = e["loc"]
                # The zone resolves `when`, so zone problems are reported there.
                if loc[:1] == ("timezone",):
                    loc = ("when", *loc[1:])
                problems.append(Problem(source, _place(("events", index, *loc)), _message(e)))
            continue
        if event.id in seen:
            problems.append(
                Problem(
                    source,
                    f"events[{index}].id",
                    f"duplicate event id {event.id!r} (first at events[{seen[event.id]}])",
                )
            )
        seen.setdefault(event.id, index)
        if info is not None:
            problems.extend(_send_at_problems(event, info, source=source, index=index))
        events.append(event)
    if problems or info is None:
        raise ConfigError(problems)
    return Campaign(campaign=info, events=tuple(events))


def load_campaign(path: Path) -> Campaign:
    """Read and validate the campaign file; raises ConfigError listing every problem."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError([Problem(source, "", f"cannot read file: {reason}")]) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(err))
        place = f"line {match.group(1)}" if match else ""
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
        msg = msg.replace("end of document", "end of file")
        raise ConfigError([Problem(source, place, f"invalid TOML: {msg}")]) from err
    return parse_campaign(data, source=source)
