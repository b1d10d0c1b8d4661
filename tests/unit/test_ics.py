"""iCalendar output: stable UID, SEQUENCE, dates, status, feed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from campaignbot.campaign.model import Campaign, load_campaign, parse_campaign
from campaignbot.email.calendar import event_ics, feed_ics

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 6, 16, 7, 30, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign(REPO / "config" / "campaign.toml")


def _one_event(data: bytes) -> tuple[Calendar, object]:
    cal = Calendar.from_ical(data)
    events = cal.walk("VEVENT")
    assert len(events) == 1
    return cal, events[0]


def test_a_timed_event_has_a_stable_uid_and_its_zone(campaign: Campaign) -> None:
    event = campaign.event("fi-final-vote")
    cal, vevent = _one_event(event_ics(event, campaign.campaign, locale="fi", now=NOW))
    assert str(cal["METHOD"]) == "PUBLISH"
    assert str(vevent["UID"]) == "fi-final-vote@example.org"
    start = vevent.decoded("DTSTART")
    assert start == datetime(2025, 6, 19, 10, tzinfo=ZoneInfo("Europe/Helsinki"))
    assert vevent["DTSTART"].params["TZID"] == "Europe/Helsinki"
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Helsinki"]
    assert str(vevent["SUMMARY"]) == event.title["fi"]
    assert vevent.decoded("DTSTAMP") == datetime(2025, 6, 16, 7, 30, 15, tzinfo=UTC)
    assert str(vevent["STATUS"]) == "CONFIRMED"
    assert str(vevent["URL"]) == "https://example.org/act/fi"
    assert "Kirjoita kansanedustajallesi: https://example.org/act/fi" in str(vevent["DESCRIPTION"])


def test_the_uid_is_the_same_in_every_locale_and_sequence(campaign: Campaign) -> None:
    event = campaign.event("msp-22")
    uids = set()
    for locale, sequence in [("en", 0), ("pl", 4)]:
        _, vevent = _one_event(
            event_ics(event, campaign.campaign, locale=locale, now=NOW, sequence=sequence)
        )
        uids.add(str(vevent["UID"]))
        assert vevent.decoded("SEQUENCE") == sequence
    assert uids == {"msp-22@example.org"}


def test_an_all_day_event_is_a_date_not_shifted(campaign: Campaign) -> None:
    event = campaign.event("baltic-deposit")  # a New York date
    cal, vevent = _one_event(event_ics(event, campaign.campaign, locale="en", now=NOW))
    assert vevent.decoded("DTSTART") == date(2025, 6, 27)
    assert vevent.decoded("DTEND") == date(2025, 6, 28)
    assert "VALUE=DATE" in event_ics(event, campaign.campaign, locale="en", now=NOW).decode()
    assert cal.walk("VTIMEZONE") == []


def _with_status(status: str) -> Campaign:
    return parse_campaign(
        {
            "campaign": {
                "name": "Test",
                "sender": "Alerts <alerts@example.net>",
                "timezone": "Europe/Warsaw",
            },
            "events": [
                {
                    "id": "vote",
                    "title": "Vote",
                    "when": "2026-03-01T12:00:00",
                    "status": status,
                }
            ],
        },
        source="test",
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [("scheduled", "CONFIRMED"), ("postponed", "TENTATIVE"), ("cancelled", "CANCELLED")],
)
def test_status_follows_the_event(status: str, expected: str) -> None:
    campaign = _with_status(status)
    event = campaign.events[0]
    _, vevent = _one_event(event_ics(event, campaign.campaign, locale="en", now=NOW, sequence=2))
    assert str(vevent["STATUS"]) == expected
    assert str(vevent["UID"]) == "vote@example.net"
    assert vevent.decoded("DTSTART") == datetime(2026, 3, 1, 12, tzinfo=ZoneInfo("Europe/Warsaw"))


def test_a_feed_holds_every_event_with_its_sequence(campaign: Campaign) -> None:
    data = feed_ics(
        campaign.events, campaign.campaign, locale="pl", now=NOW, sequences={"msp-22": 3}
    )
    cal = Calendar.from_ical(data)
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert len(events) == len(campaign.events)
    assert events["msp-22@example.org"].decoded("SEQUENCE") == 3
    assert events["fi-final-vote@example.org"].decoded("SEQUENCE") == 0
    assert str(cal["X-WR-CALNAME"]) == campaign.campaign.name
    zones = {str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")}
    assert {"Europe/Helsinki", "Europe/Warsaw", "Europe/Zurich"} <= zones
