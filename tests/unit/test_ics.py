"""iCalendar output: stable UID, SEQUENCE, dates, status, feed; RFC 5546 (ORGANIZER,
DTEND, METHOD:CANCEL), checked with icalendar and a second parser (vobject)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import vobject
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


def _with_status(status: str, **extra: object) -> Campaign:
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
                    **extra,
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
    assert str(cal["X-WR-CALNAME"]) == campaign.campaign.name_for("pl")
    assert str(cal["X-WR-CALNAME"]) == "Zostańmy w konwencji ottawskiej"
    assert str(cal["METHOD"]) == "PUBLISH"
    zones = {str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")}
    assert {"Europe/Helsinki", "Europe/Warsaw", "Europe/Zurich"} <= zones


def _vobject(data: bytes) -> object:
    """The second parser: vobject reads the file on its own terms."""
    return vobject.readOne(data.decode("utf-8"))


@pytest.mark.parametrize("locale", ["en", "fi", "pl", "et", "lv", "lt"])
def test_an_attachment_has_an_organizer_and_a_real_end(campaign: Campaign, locale: str) -> None:
    event = campaign.event("msp-22")
    data = event_ics(event, campaign.campaign, locale=locale, now=NOW)
    cal, vevent = _one_event(data)
    assert str(cal["METHOD"]) == "PUBLISH"
    assert "X-WR-CALNAME" not in cal  # feed only: clients may open it as a new calendar
    organizer = vevent["ORGANIZER"]  # type: ignore[index]
    assert str(organizer) == "mailto:alerts@example.org"
    assert organizer.params["CN"] == campaign.campaign.name_for(locale)
    start, end = vevent.decoded("DTSTART"), vevent.decoded("DTEND")  # type: ignore[attr-defined]
    assert end - start == timedelta(hours=1)  # no duration in the file: an hour
    second = _vobject(data)
    assert second.vevent.organizer.value == "mailto:alerts@example.org"  # type: ignore[attr-defined]
    assert second.vevent.dtend.value - second.vevent.dtstart.value == timedelta(hours=1)  # type: ignore[attr-defined]
    assert second.vevent.uid.value == "msp-22@example.org"  # type: ignore[attr-defined]


def test_the_duration_sets_the_end() -> None:
    campaign = _with_status("scheduled", duration="90m")
    data = event_ics(campaign.events[0], campaign.campaign, locale="en", now=NOW)
    _, vevent = _one_event(data)
    assert vevent.decoded("DTEND") == datetime(  # type: ignore[attr-defined]
        2026, 3, 1, 13, 30, tzinfo=ZoneInfo("Europe/Warsaw")
    )
    assert _vobject(data).vevent.dtend.value.hour == 13  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["0", "soon", "-1h"])
def test_a_bad_duration_is_refused(bad: str) -> None:
    with pytest.raises(Exception, match="duration"):
        _with_status("scheduled", duration=bad)


def test_a_cancellation_is_method_cancel_with_the_same_uid_and_a_higher_sequence() -> None:
    scheduled = _with_status("scheduled")
    cancelled = _with_status("cancelled")
    first = event_ics(scheduled.events[0], scheduled.campaign, locale="en", now=NOW, sequence=0)
    later = event_ics(cancelled.events[0], cancelled.campaign, locale="en", now=NOW, sequence=1)
    cal0, event0 = _one_event(first)
    cal1, event1 = _one_event(later)
    assert str(cal0["METHOD"]) == "PUBLISH" and str(cal1["METHOD"]) == "CANCEL"
    assert str(event1["UID"]) == str(event0["UID"])  # type: ignore[index]
    assert event1.decoded("SEQUENCE") > event0.decoded("SEQUENCE")  # type: ignore[attr-defined]
    assert str(event1["STATUS"]) == "CANCELLED"  # type: ignore[index]
    assert "ORGANIZER" in event1  # type: ignore[operator]  # RFC 5546 3.2.5: required
    second = _vobject(later)
    assert second.method.value == "CANCEL"  # type: ignore[attr-defined]
    assert second.vevent.status.value == "CANCELLED"  # type: ignore[attr-defined]


def test_the_feed_parses_with_the_second_parser(campaign: Campaign) -> None:
    data = feed_ics(campaign.events, campaign.campaign, locale="lt", now=NOW)
    second = _vobject(data)
    uids = {e.uid.value for e in second.vevent_list}  # type: ignore[attr-defined]
    assert len(uids) == len(campaign.events)
    assert second.x_wr_calname.value == "Likime Otavos konvencijoje"  # type: ignore[attr-defined]
