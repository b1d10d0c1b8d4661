"""Babel formatting for what subscribers read: dates, times, zone and city names,
"in 2 days" phrases, and the web form's localized zone and country lists (pure).

Relative phrases use CLDR (plural forms per language) through Babel; only the
one-unit phrases ("in a week", "za tydzień", "viikon päästä") come from a table
here, because CLDR's "in {0} week" pattern would print a digit 1.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.core import get_global
from babel.dates import (
    format_date,
    format_datetime,
    format_timedelta,
    get_timezone_location,
    get_timezone_name,
)

from campaignbot.campaign.model import Offset

#: a bare language's formats where its CLDR default misses the campaign's readers:
#: English for Europeans reads "Monday 7 December 2026 at 11:00", not "11:00 AM"
_REGION = {"en": "en_GB"}


@lru_cache(maxsize=256)
def babel_locale(name: str, fallback: str = "en") -> Locale:
    """`name` as a Babel Locale ("fi", "fi_FI", "pt-BR"); unknown names give `fallback`."""
    name = _REGION.get(name, name)
    for candidate in (name, name.replace("-", "_").split("_")[0], fallback, "en"):
        try:
            return Locale.parse(candidate.replace("-", "_"))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    raise AssertionError("unreachable: 'en' is always known")  # pragma: no cover


@lru_cache(maxsize=256)
def zone(name: str, fallback: ZoneInfo) -> ZoneInfo:
    """An IANA zone by name; a bad or empty name gives `fallback`."""
    try:
        return ZoneInfo(name) if name else fallback
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


@dataclass(frozen=True)
class When:
    """An event's moment, formatted for one locale and time zone."""

    date: str  # "Thursday, June 19, 2025"
    time: str  # "9:00 AM"; "" for all-day events
    timezone: str  # "Central European Summer Time"; "" for all-day events
    text: str  # "Thursday, June 19, 2025 at 9:00 AM (Central European Summer Time)"


# CLDR's date-time glue per language where the generic "{1} {0}" reads mechanically:
# "czwartek, 19 czerwca 2025 r., godz. 10:00", "neljapäev, 19. juuni 2025 kell 10:00"
_COMBOS = {
    "en": "{1} 'at' {0}",
    "pl": "{1}, 'godz.' {0}",
    "et": "{1} 'kell' {0}",
    "lv": "{1}, 'plkst.' {0}",
    "lt": "{1}, {0}",
}


#: after a date with its year, Polish writes "r." ("27 grudnia 2025 r.")
_YEAR_MARK = {"pl": " 'r.'"}
#: a time on its own: Finnish says "klo 10.00"
_CLOCK = {"fi": "'klo' "}


def _date_pattern(locale: Locale) -> str:
    return str(locale.date_formats["full"].pattern) + _YEAR_MARK.get(locale.language, "")


def _datetime_pattern(locale: Locale) -> str:
    # CLDR's "relative" (atTime) combination reads naturally: "{1} 'at' {0}", "{1} 'klo' {0}".
    combos = locale._data.get("datetime_formats_relative") or {}
    combo = _COMBOS.get(locale.language) or str(
        combos.get("full") or locale.datetime_formats["full"]
    )
    return combo.replace("{1}", _date_pattern(locale)).replace(
        "{0}", locale.time_formats["short"].pattern
    )


def city(tz: ZoneInfo, locale: Locale) -> str:
    """The zone's exemplar city in `locale`: "Geneva" is Europe/Zurich's "Zurich";
    "Varsova" for Europe/Warsaw in Finnish."""
    return str(get_timezone_location(tz, locale=locale, return_city=True))


def zone_name(moment: datetime, tz: ZoneInfo, locale: Locale) -> str:
    """The long name of `tz` at `moment`: "Central European Summer Time"."""
    return str(get_timezone_name(moment.astimezone(tz), "long", locale=locale))


def format_when(moment: datetime | date, locale: Locale, tz: ZoneInfo) -> When:
    """A timed moment in `tz` with its zone's name; a date as itself (never shifted)."""
    if not isinstance(moment, datetime):
        text = format_date(moment, _date_pattern(locale), locale=locale)
        return When(date=text, time="", timezone="", text=text)
    local = moment.astimezone(tz)
    zone_name = get_timezone_name(local, "long", locale=locale)
    day = format_date(local.date(), _date_pattern(locale), locale=locale)
    clock = format_datetime(local, locale.time_formats["short"].pattern, locale=locale)
    combined = format_datetime(local, _datetime_pattern(locale), locale=locale)
    return When(date=day, time=clock, timezone=zone_name, text=f"{combined} ({zone_name})")


def format_venue_time(moment: datetime, locale: Locale, tz: ZoneInfo, reader: ZoneInfo) -> str:
    """The event's own wall time when the reader's zone shows another one: "10:00",
    or the whole date when the day differs too; "" when both zones agree."""
    here, there = moment.astimezone(reader), moment.astimezone(tz)
    if here.utcoffset() == there.utcoffset():
        return ""
    if here.date() == there.date():
        clock = _CLOCK.get(locale.language, "") + locale.time_formats["short"].pattern
        return format_datetime(there, clock, locale=locale)
    return format_datetime(there, _datetime_pattern(locale), locale=locale)


# --- relative phrases ----------------------------------------------------------

#: "in one <unit>" said the way people say it; CLDR only has "in {0} <unit>"
_ONE = {
    "en": {"minute": "in a minute", "hour": "in an hour", "week": "in a week"},
    "fi": {"minute": "minuutin päästä", "hour": "tunnin päästä", "week": "viikon päästä"},
    "pl": {"minute": "za minutę", "hour": "za godzinę", "week": "za tydzień"},
    "et": {"minute": "minuti pärast", "hour": "tunni pärast", "week": "nädala pärast"},
    "lv": {"minute": "pēc minūtes", "hour": "pēc stundas", "week": "pēc nedēļas"},
    "lt": {"minute": "po minutės", "hour": "po valandos", "week": "po savaitės"},
}
Unit = Literal["week", "day", "hour", "minute"]
_SECONDS: dict[Unit, int] = {"week": 604800, "day": 86400, "hour": 3600, "minute": 60}
_UNIT: dict[str, Unit] = {"w": "week", "d": "day", "h": "hour", "m": "minute"}


def _relative_word(locale: Locale, field: str, amount: int) -> str | None:
    fields = locale._data.get("date_fields") or {}
    try:
        return str(fields[field]["relative"][amount])
    except (KeyError, TypeError):
        return None


def in_units(amount: int, unit: Unit, locale: Locale) -> str:
    """Exactly `amount` of `unit` ahead ("week", "day", "hour", "minute"), never
    rounded to another unit: "tomorrow", "in a week", "za 10 dni", "viikon päästä"."""
    if amount <= 0:
        word = _relative_word(locale, "day" if unit in ("week", "day") else "second", 0)
        return word or "now"
    if amount == 1:
        word = _relative_word(locale, "day", 1) if unit == "day" else None
        word = word or _ONE.get(locale.language, {}).get(unit)
        if word:
            return word
    span = timedelta(seconds=amount * _SECONDS[unit])
    # granularity plus an unreachable threshold pins the unit: Babel would otherwise
    # round 10 days to "1 week" and 30 days to "1 month"
    return str(
        format_timedelta(span, granularity=unit, threshold=1e9, add_direction=True, locale=locale)
    )


def _offset_phrase(offset: Offset, locale: Locale, *, all_day: bool) -> str:
    if offset.amount == 0:
        word = _relative_word(locale, "day" if all_day else "second", 0)
        return word or ("today" if all_day else "now")
    if offset.unit == "d" and offset.amount % 7 == 0:
        return in_units(offset.amount // 7, "week", locale)  # 7d: "in a week", exactly
    return in_units(offset.amount, _UNIT[offset.unit], locale)


def relative_phrase(
    offset: Offset,
    locale: Locale,
    *,
    all_day: bool,
    days: int | None = None,
    lead: timedelta | None = None,
) -> str:
    """How far the event is when the reminder is read: "tomorrow", "in 3 days", "now".

    `days` (calendar days from now to the event, in the event's zone) and `lead`
    (the exact time left) come from the moment of rendering. While the real lead
    rounds to the reminder's own offset, the phrase is the offset's, in its unit
    (calendar days for "d"/"w": "1d" across a DST change is still "tomorrow");
    otherwise (a late send) it is the real lead. Without them, the offset's phrase.
    """
    if days is None or lead is None:
        return _offset_phrase(offset, locale, all_day=all_day)
    if offset.is_calendar and days == offset.days:
        return _offset_phrase(offset, locale, all_day=all_day)
    if offset.unit in ("h", "m"):
        size = _SECONDS[_UNIT[offset.unit]]
        if round(lead.total_seconds() / size) == offset.amount:
            return _offset_phrase(offset, locale, all_day=all_day)
    if offset.amount == 0 and (lead <= timedelta(minutes=1) or (all_day and days == 0)):
        return _offset_phrase(offset, locale, all_day=all_day)
    return _real_lead(days, lead, locale, all_day=all_day)


def _real_lead(days: int, lead: timedelta, locale: Locale, *, all_day: bool) -> str:
    if days >= 1:
        return in_units(days, "day", locale)
    if all_day or lead <= timedelta(minutes=1):
        return in_units(0, "day" if all_day else "minute", locale)
    if lead >= timedelta(hours=1):
        return in_units(round(lead.total_seconds() / 3600), "hour", locale)
    return in_units(max(1, round(lead.total_seconds() / 60)), "minute", locale)


# --- the web form's lists (pure; the web app shows them) ---------------------------

#: the language -> its country, for a zone default when no country is chosen
_LANGUAGE_COUNTRY = {"fi": "FI", "pl": "PL", "et": "EE", "lv": "LV", "lt": "LT"}


def country_zones(country: str) -> list[str]:
    """The IANA zones CLDR lists for a country ("PL" -> ["Europe/Warsaw"])."""
    zones = get_global("territory_zones").get(country.upper(), [])
    return [z for z in zones if _known_zone(z)]


def default_zone(locale: str, country: str | None, fallback: str) -> str:
    """A new subscriber's zone: their country's (if it has one zone), else their
    language's country's ("pl" -> Europe/Warsaw), else `fallback`."""
    for code in (country, _LANGUAGE_COUNTRY.get(locale.replace("-", "_").split("_")[0])):
        zones = country_zones(code) if code else []
        if len(zones) == 1:
            return zones[0]
    return fallback


@lru_cache(maxsize=1)
def _all_zones() -> tuple[str, ...]:
    return tuple(
        sorted(
            z
            for z in zoneinfo.available_timezones()
            if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/", "right/", "US/"))
        )
    )


def _known_zone(name: str) -> bool:
    return name in _all_zones()


def zone_choices(
    locale: str, countries: Iterable[str] = (), zones: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """(IANA id, label) pairs for a time zone select: the zones of `countries` first
    (the campaign's, the subscriber's), then every other zone; labels are city
    names in `locale` ("Varsova", "Warszawa"), sorted by the locale's collation."""
    offered = tuple(zones) if zones is not None else _all_zones()
    return list(_zone_choices(locale, tuple(countries), offered))


@lru_cache(maxsize=64)
def _zone_choices(
    locale: str, countries: tuple[str, ...], zones: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    # cached: labelling ~430 zones takes ~60 ms, and the page shows them on every visit
    loc = babel_locale(locale)
    key = collation_key(locale)
    first = list(dict.fromkeys(z for c in countries for z in country_zones(c)))
    rest = [z for z in zones if z not in first]
    likely = sorted(((z, city(ZoneInfo(z), loc)) for z in first), key=lambda p: key(p[1]))
    others = sorted(((z, city(ZoneInfo(z), loc)) for z in rest), key=lambda p: key(p[1]))
    return tuple(likely + others)


def sorted_countries(locale: str, codes: Iterable[str]) -> list[tuple[str, str]]:
    """(code, name) pairs in `locale` in its alphabetical order: "Litwa, Łotwa, Polska"."""
    names = babel_locale(locale).territories
    key = collation_key(locale)
    pairs = [(code, str(names.get(code.upper(), code))) for code in codes]
    return sorted(pairs, key=lambda pair: key(pair[1]))


@lru_cache(maxsize=16)
def collation_key(locale: str) -> Callable[[str], Any]:
    """A sort key by `locale`'s collation: ICU's when PyICU is installed (optional),
    else the Unicode Collation Algorithm's default table (pyuca, pure Python),
    which already puts Ł after L ("Litwa, Łotwa, Polska") and Ä after A."""
    try:
        import icu  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _uca_key
    collator = icu.Collator.createInstance(icu.Locale(locale.replace("-", "_")))
    return collator.getSortKey  # type: ignore[no-any-return,unused-ignore]


def _uca_key(text: str) -> Any:
    return _uca().sort_key(text)


@lru_cache(maxsize=1)
def _uca() -> Any:
    from pyuca import Collator  # type: ignore[import-untyped,unused-ignore]

    return Collator()
