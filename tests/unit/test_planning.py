"""Reminder due times: calendar-aware, DST-safe, pure."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from campaignbot.campaign.localtime import dst_problem
from campaignbot.campaign.model import Campaign, Event, parse_campaign, parse_offset
from campaignbot.campaign.planning import (
    alerts_for_event,
    event_deadline,
    plan_alerts,
    reminder_due,
)

HELSINKI = ZoneInfo("Europe/Helsinki")
SEND_AT = time(9, 0)


def make_event(when: Any, tz: str = "Europe/Helsinki", **fields: Any) -> Event:
    data = {"id": "e", "title": "E", "when": when, "timezone": tz, "reminders": ["0"], **fields}
    return Event.model_validate(data)


@pytest.mark.parametrize(
    ("when", "offset", "expected_local"),
    [
        # plain calendar day
        (datetime(2025, 6, 17, 10, 0), "1d", datetime(2025, 6, 16, 10, 0)),
        # "1d" before a 10:00 event the day after spring-forward (30 Mar 2025): still 10:00
        (datetime(2025, 3, 31, 10, 0), "1d", datetime(2025, 3, 30, 10, 0)),
        (datetime(2025, 3, 30, 10, 0), "1d", datetime(2025, 3, 29, 10, 0)),
        # across fall-back (26 Oct 2025)
        (datetime(2025, 10, 27, 10, 0), "1d", datetime(2025, 10, 26, 10, 0)),
        (datetime(2025, 11, 2, 10, 0), "1w", datetime(2025, 10, 26, 10, 0)),
        # hour offsets are elapsed time: 2h before 04:30 on spring-forward day is 01:30 EET
        (datetime(2025, 3, 30, 4, 30), "2h", datetime(2025, 3, 30, 1, 30)),
        (datetime(2025, 6, 17, 10, 0), "90m", datetime(2025, 6, 17, 8, 30)),
        (datetime(2025, 6, 17, 10, 0), "0", datetime(2025, 6, 17, 10, 0)),
        # all-day events anchor at send_at
        (date(2025, 6, 27), "0", datetime(2025, 6, 27, 9, 0)),
        (date(2025, 3, 31), "1d", datetime(2025, 3, 30, 9, 0)),
        (date(2025, 3, 31), "2h", datetime(2025, 3, 31, 7, 0)),
    ],
    ids=[
        "day",
        "day-after-spring-forward",
        "on-spring-forward-day",
        "day-after-fall-back",
        "week-across-fall-back",
        "hours-across-spring-forward",
        "minutes",
        "at-event",
        "all-day-at-send-at",
        "all-day-day-before-across-dst",
        "all-day-hours-before-send-at",
    ],
)
def test_reminder_due_in_helsinki(when: Any, offset: str, expected_local: datetime) -> None:
    event = make_event(when)
    due = reminder_due(event, parse_offset(offset), SEND_AT)
    assert due.tzinfo is UTC
    assert due.astimezone(HELSINKI).replace(tzinfo=None) == expected_local


def test_one_day_before_across_dst_is_23_hours_of_elapsed_time() -> None:
    event = make_event(datetime(2025, 3, 31, 10, 0))
    due = reminder_due(event, parse_offset("1d"), SEND_AT)
    # 30 March 2025 had 23 hours in Helsinki; the wall clock stays at 10:00
    assert (datetime(2025, 3, 31, 7, 0, tzinfo=UTC) - due) == timedelta(hours=24)
    event = make_event(datetime(2025, 3, 30, 10, 0))
    due = reminder_due(event, parse_offset("1d"), SEND_AT)
    assert (datetime(2025, 3, 30, 7, 0, tzinfo=UTC) - due) == timedelta(hours=23)


def test_offset_datetime_keeps_its_instant_and_shows_in_the_event_zone() -> None:
    event = make_event(datetime(2025, 6, 17, 10, 0, tzinfo=ZoneInfo("Europe/Warsaw")))
    (alert,) = alerts_for_event(event, SEND_AT)
    assert alert.due_utc == datetime(2025, 6, 17, 8, 0, tzinfo=UTC)
    assert alert.due_local.hour == 11  # shown in Helsinki, the event's zone


def test_postponed_and_cancelled_events_have_no_alerts() -> None:
    assert alerts_for_event(make_event(date(2030, 1, 1), status="postponed"), SEND_AT) == []
    assert alerts_for_event(make_event(date(2030, 1, 1), status="cancelled"), SEND_AT) == []


def _campaign(*events: dict[str, Any]) -> Campaign:
    return parse_campaign(
        {
            "campaign": {
                "name": "C",
                "sender": "C <c@example.org>",
                "timezone": "Europe/Helsinki",
                "reminders": ["7d", "1d", "0"],
            },
            "events": list(events),
        },
        source="test.toml",
    )


def test_plan_is_in_due_order_and_within_range() -> None:
    campaign = _campaign(
        {"id": "late", "title": "L", "when": date(2030, 5, 1)},
        {"id": "early", "title": "E", "when": datetime(2030, 4, 28, 12, 0)},
    )
    since = datetime(2030, 4, 24, tzinfo=UTC)
    until = datetime(2030, 5, 1, tzinfo=UTC)
    plan = plan_alerts(campaign, since=since, until=until)
    assert [(a.event_id, a.reminder) for a in plan] == [
        ("late", "7d"),
        ("early", "1d"),
        ("early", "0"),
        ("late", "1d"),
    ]
    assert all(since <= a.due_utc < until for a in plan)
    assert plan == sorted(plan, key=lambda a: a.due_utc)


def test_all_day_event_lasts_until_local_midnight() -> None:
    event = make_event(date(2030, 1, 10))
    assert event_deadline(event, SEND_AT) == datetime(2030, 1, 10, 22, 0, tzinfo=UTC)


def valid_local(when: datetime, zone: str) -> datetime:
    """A local time that is one instant: a DST gap or fold is refused at validation."""
    when = when.replace(second=0, microsecond=0)
    assume(dst_problem(when, ZoneInfo(zone)) is None)
    return when


zones = st.sampled_from(
    ["Europe/Helsinki", "Europe/Warsaw", "America/New_York", "Australia/Lord_Howe", "UTC"]
)
local_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1))
offsets = st.builds(
    lambda n, u: parse_offset(f"{n}{u}"), st.integers(1, 400), st.sampled_from("wdhm")
)


@given(zone=zones, when=local_times, offset=offsets)
def test_every_reminder_is_due_before_its_event(zone: str, when: datetime, offset: Any) -> None:
    when = valid_local(when, zone)
    event = make_event(when, tz=zone)
    start = reminder_due(event, parse_offset("0"), SEND_AT)
    assert reminder_due(event, offset, SEND_AT) < start


@given(zone=zones, when=local_times, days=st.integers(1, 400))
def test_day_offsets_keep_the_local_wall_clock(zone: str, when: datetime, days: int) -> None:
    tz = ZoneInfo(zone)
    when = valid_local(when, zone)
    event = make_event(when, tz=zone)
    due = reminder_due(event, parse_offset(f"{days}d"), SEND_AT).astimezone(tz)
    start = reminder_due(event, parse_offset("0"), SEND_AT).astimezone(tz)
    assert due.date() == start.date() - timedelta(days=days)
    # equal wall clock unless one side falls in a DST gap (shifted by the gap, < 1 h)
    gap = abs(datetime.combine(date.min, due.time()) - datetime.combine(date.min, start.time()))
    assert gap == timedelta(0) or gap <= timedelta(hours=1)


@given(zone=zones, when=local_times, hours=st.integers(1, 2000))
def test_hour_offsets_are_elapsed_time(zone: str, when: datetime, hours: int) -> None:
    when = valid_local(when, zone)
    event = make_event(when, tz=zone)
    start = reminder_due(event, parse_offset("0"), SEND_AT)
    assert start - reminder_due(event, parse_offset(f"{hours}h"), SEND_AT) == timedelta(hours=hours)
