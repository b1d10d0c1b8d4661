"""Words and lists for readers: relative phrases, zone and country lists, dates,
and RFC 2047 headers of long non-ASCII names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaignbot.campaign.model import parse_offset
from campaignbot.email.i18n import (
    babel_locale,
    default_zone,
    format_venue_time,
    format_when,
    relative_phrase,
    sorted_countries,
    zone_choices,
)
from campaignbot.email.mime import mailbox, unstructured

H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.mark.parametrize(
    ("locale", "offset", "expected"),
    [
        ("en", "7d", "in a week"),
        ("fi", "7d", "viikon päästä"),
        ("pl", "7d", "za tydzień"),
        ("et", "7d", "nädala pärast"),
        ("lv", "7d", "pēc nedēļas"),
        ("lt", "7d", "po savaitės"),
        ("en", "1w", "in a week"),
        ("en", "1h", "in an hour"),
        ("fi", "1h", "tunnin päästä"),
        ("pl", "1h", "za godzinę"),
        ("lt", "1m", "po minutės"),
        ("en", "1d", "tomorrow"),
        ("lv", "1d", "rīt"),
        # the offset's own unit, never rounded to another one
        ("en", "10d", "in 10 days"),
        ("en", "30d", "in 30 days"),
        ("en", "25d", "in 25 days"),
        ("en", "5w", "in 5 weeks"),
        ("en", "14d", "in 2 weeks"),
        ("pl", "2w", "za 2 tygodnie"),
        ("pl", "5w", "za 5 tygodni"),
        ("lv", "21d", "pēc 3 nedēļām"),
        ("lt", "3d", "po 3 dienų"),
        ("et", "2h", "2 tunni pärast"),
        ("en", "0", "now"),
    ],
    ids=lambda v: str(v),
)
def test_the_reminder_phrase_is_its_offset_in_words(
    locale: str, offset: str, expected: str
) -> None:
    parsed = parse_offset(offset)
    days = parsed.days
    lead = timedelta(days=parsed.days) + parsed.duration
    phrase = relative_phrase(parsed, babel_locale(locale), all_day=False, days=days, lead=lead)
    assert phrase == expected
    assert relative_phrase(parsed, babel_locale(locale), all_day=False) == expected


@pytest.mark.parametrize(
    ("offset", "days", "lead", "expected"),
    [
        ("1d", 1, 20 * H, "tomorrow"),  # a few hours late: still tomorrow's event
        ("1d", 0, 5 * H, "in 5 hours"),  # so late it is today: the real lead
        ("7d", 6, 6 * D + 2 * H, "in 6 days"),  # a day late: not "in a week"
        ("2h", 0, 2 * H + timedelta(minutes=20), "in 2 hours"),  # rounds to the unit
        ("2h", 0, 1 * H + timedelta(minutes=10), "in an hour"),  # does not: real lead
        ("2h", 0, timedelta(minutes=40), "in 40 minutes"),
        ("0", 0, timedelta(seconds=30), "now"),
        ("0", 0, 3 * H, "in 3 hours"),  # rendered early, e.g. a preview
    ],
    ids=lambda v: str(v),
)
def test_a_late_or_early_message_says_the_real_lead(
    offset: str, days: int, lead: timedelta, expected: str
) -> None:
    phrase = relative_phrase(
        parse_offset(offset), babel_locale("en"), all_day=False, days=days, lead=lead
    )
    assert phrase == expected


def test_an_all_day_event_on_its_day_is_today() -> None:
    phrase = relative_phrase(parse_offset("0"), babel_locale("fi"), all_day=True, days=0, lead=-H)
    assert phrase == "tänään"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("pl", ["Estonia", "Finlandia", "Litwa", "Łotwa", "Polska"]),
        ("fi", ["Latvia", "Liettua", "Puola", "Suomi", "Viro"]),
        ("en", ["Estonia", "Finland", "Latvia", "Lithuania", "Poland"]),
    ],
)
def test_countries_sort_by_the_languages_alphabet(locale: str, expected: list[str]) -> None:
    pairs = sorted_countries(locale, ["PL", "LV", "LT", "FI", "EE"])
    assert [name for _, name in pairs] == expected


def test_zone_choices_are_city_names_with_the_likely_ones_first() -> None:
    choices = zone_choices("pl", ["PL", "FI"])
    assert choices[:2] == [("Europe/Helsinki", "Helsinki"), ("Europe/Warsaw", "Warszawa")]
    labels = dict(choices)
    assert labels["Europe/Vilnius"] == "Wilno"
    assert dict(zone_choices("fi", []))["Europe/Warsaw"] == "Varsova"
    assert all("/" in zone for zone, _ in choices)
    assert len(choices) == len(set(choices)) > 300


@pytest.mark.parametrize(
    ("locale", "country", "expected"),
    [
        ("pl", None, "Europe/Warsaw"),
        ("lv", None, "Europe/Riga"),
        ("en", "EE", "Europe/Tallinn"),
        ("fi", "LT", "Europe/Vilnius"),
        ("en", None, "Europe/Helsinki"),  # no hint: the campaign's zone
        ("en", "US", "Europe/Helsinki"),  # several zones: cannot guess
    ],
)
def test_a_new_subscriber_gets_a_zone_from_country_or_language(
    locale: str, country: str | None, expected: str
) -> None:
    assert default_zone(locale, country, "Europe/Helsinki") == expected


def test_the_event_time_is_shown_beside_the_readers_time() -> None:
    moment = datetime(2026, 12, 7, 10, tzinfo=ZoneInfo("Europe/Zurich"))
    geneva, helsinki = ZoneInfo("Europe/Zurich"), ZoneInfo("Europe/Helsinki")
    assert format_venue_time(moment, babel_locale("fi"), geneva, helsinki) == "klo 10.00"
    assert format_venue_time(moment, babel_locale("fi"), geneva, geneva) == ""
    assert "11.00" in format_when(moment, babel_locale("fi"), helsinki).text


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("pl", "poniedziałek, 7 grudnia 2026 r., godz. 11:00"),
        ("et", "esmaspäev, 7. detsember 2026 kell 11:00"),
        ("lv", "pirmdiena, 2026. gada 7. decembris, plkst. 11:00"),
        ("lt", "2026 m. gruodžio 7 d., pirmadienis, 11:00"),
        ("en", "Monday, 7 December 2026 at 11:00"),
    ],
)
def test_dates_read_naturally(locale: str, expected: str) -> None:
    moment = datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert format_when(moment, babel_locale(locale), ZoneInfo("Europe/Helsinki")).text.startswith(
        expected
    )


_WORDS = re.compile(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=")


@pytest.mark.parametrize("length", range(10, 90, 7))
def test_encoded_words_are_at_most_75_characters(length: int) -> None:
    name = ("Łukasz Żółć-Brzęczyszczykiewicz " * 4)[:length]
    for header in (mailbox("To", name, "l@example.org"), unstructured("Subject", name)):
        wire = header.fold(policy=__import__("email.policy").policy.SMTP)
        words = _WORDS.findall(wire)
        assert words, wire
        assert max(len(w) for w in words) <= 75, wire


def test_a_polish_date_has_its_year_mark() -> None:
    from datetime import date

    assert format_when(date(2025, 12, 27), babel_locale("pl"), ZoneInfo("UTC")).text == (
        "sobota, 27 grudnia 2025 r."
    )


@given(amount=st.integers(2, 400), unit=st.sampled_from(["w", "d", "h", "m"]))
def test_the_offsets_own_number_is_said_never_a_rounded_one(amount: int, unit: str) -> None:
    offset = parse_offset(f"{amount}{unit}")
    phrase = relative_phrase(offset, babel_locale("en"), all_day=False)
    if unit == "d" and amount % 7 == 0:
        weeks = amount // 7
        expected = "in a week" if weeks == 1 else f"in {weeks} weeks"
    else:
        name = {"w": "week", "d": "day", "h": "hour", "m": "minute"}[unit]
        expected = f"in {amount} {name}s"
    assert phrase == expected
