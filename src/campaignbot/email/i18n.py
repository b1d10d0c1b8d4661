"""Babel formatting for emails: dates, times, zone names and "in 2 days" phrases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_timedelta, get_timezone_name

from campaignbot.campaign.model import Offset


@lru_cache(maxsize=256)
def babel_locale(name: str, fallback: str = "en") -> Locale:
    """`name` as a Babel Locale ("fi", "fi_FI", "pt-BR"); unknown names give `fallback`."""
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


def _datetime_pattern(locale: Locale) -> str:
    # CLDR's "relative" (atTime) combination reads naturally: "{1} 'at' {0}", "{1} 'klo' {0}".
    combos = locale._data.get("datetime_formats_relative") or {}
    combo = str(combos.get("full") or locale.datetime_formats["full"])
    return combo.replace("{1}", locale.date_formats["full"].pattern).replace(
        "{0}", locale.time_formats["short"].pattern
    )


def format_when(moment: datetime | date, locale: Locale, tz: ZoneInfo) -> When:
    """A timed moment in `tz` with its zone's name; a date as itself (never shifted)."""
    if not isinstance(moment, datetime):
        text = format_date(moment, "full", locale=locale)
        return When(date=text, time="", timezone="", text=text)
    local = moment.astimezone(tz)
    zone_name = get_timezone_name(local, "long", locale=locale)
    day = format_date(local.date(), "full", locale=locale)
    clock = format_datetime(local, locale.time_formats["short"].pattern, locale=locale)
    combined = format_datetime(local, _datetime_pattern(locale), locale=locale)
    return When(date=day, time=clock, timezone=zone_name, text=f"{combined} ({zone_name})")


def _relative_word(locale: Locale, field: str, amount: int) -> str | None:
    fields = locale._data.get("date_fields") or {}
    try:
        return str(fields[field]["relative"][amount])
    except (KeyError, TypeError):
        return None


def relative_phrase(offset: Offset, locale: Locale, *, all_day: bool) -> str:
    """How far the event is when a reminder is due: "tomorrow", "in 3 days", "now".

    Computed from the offset itself, which is exactly the distance from the due time
    to the event (calendar days for "d"/"w", elapsed time for "h"/"m"); measuring
    the instants instead would turn "1d" across a DST change into "in 23 hours".
    """
    if offset.amount == 0:
        word = _relative_word(locale, "day" if all_day else "second", 0)
        return word or ("today" if all_day else "now")
    if offset.unit == "d" and offset.amount == 1:
        word = _relative_word(locale, "day", 1)
        if word:
            return word
    span = timedelta(days=offset.days) + offset.duration
    # threshold=1 keeps "4w" as "in 4 weeks" rather than rounding it up to a month
    return str(format_timedelta(span, threshold=1, add_direction=True, locale=locale))
