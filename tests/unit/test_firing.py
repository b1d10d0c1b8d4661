"""Firing decisions and the stale guard: pure, as tables with the time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaignbot.campaign.firing import (
    ON_TIME,
    Fire,
    Skip,
    SkipReason,
    due_actions,
    is_stale,
    lead_label,
)
from campaignbot.campaign.planning import PlannedAlert

START = datetime(2030, 6, 17, 7, 0, tzinfo=UTC)


def alert(reminder: str, before: timedelta, event: str = "vote") -> PlannedAlert:
    due = START - before
    return PlannedAlert(due, event, reminder, due)


PLAN = (
    alert("7d", timedelta(days=7)),
    alert("1d", timedelta(days=1)),
    alert("2h", timedelta(hours=2)),
    alert("1m", timedelta(minutes=1)),
    alert("0", timedelta(0)),
)


def decide(now: datetime, fired: set[str] = frozenset(), catch_up_h: float = 6) -> list[str]:  # type: ignore[assignment]
    actions = due_actions(
        PLAN, {"vote": START}, fired, now=now, catch_up=timedelta(hours=catch_up_h)
    )
    return [
        f"fire {a.alert.reminder}" if isinstance(a, Fire) else f"skip {a.alert.reminder} {a.reason}"
        for a in actions
    ]


@pytest.mark.parametrize(
    ("now", "fired", "expected"),
    [
        (START - timedelta(days=8), set(), []),
        (START - timedelta(days=7), set(), ["fire 7d"]),
        # a wake-up a little late fires, even beyond catch_up (the reconcile tick)
        (START - timedelta(days=1) + timedelta(minutes=1), {"vote:7d"}, ["fire 1d"]),
        # after a long outage only the latest missed reminder goes out
        (
            START - timedelta(hours=1),
            set(),
            ["skip 7d missed", "skip 1d missed", "fire 2h"],
        ),
        # downtime across the start: everything stale, the '0' reminder too
        (
            START + timedelta(seconds=30),
            {"vote:7d", "vote:1d"},
            ["skip 2h stale", "skip 1m stale", "skip 0 stale"],
        ),
        # the '0' reminder fires at the start, within ON_TIME of it
        (START + timedelta(seconds=2), {"vote:7d", "vote:1d", "vote:2h", "vote:1m"}, ["fire 0"]),
        (START + ON_TIME, {"vote:7d", "vote:1d", "vote:2h", "vote:1m"}, ["skip 0 stale"]),
        # a reminder found late, still before its event, within catch_up
        (START - timedelta(minutes=30), {"vote:7d", "vote:1d"}, ["fire 2h"]),
    ],
    ids=[
        "nothing-due",
        "on-time",
        "late-wake-up",
        "latest-only",
        "downtime-across-start",
        "zero-on-time",
        "zero-found-by-tick",
        "within-catch-up",
    ],
)
def test_due_actions(now: datetime, fired: set[str], expected: list[str]) -> None:
    assert decide(now, fired) == expected


def test_within_catch_up_only_the_latest_missed_reminder_goes_out() -> None:
    now = START - timedelta(hours=1)
    assert decide(now, catch_up_h=48) == ["skip 7d missed", "skip 1d superseded", "fire 2h"]


def test_a_reminder_missed_beyond_catch_up_is_skipped_as_missed() -> None:
    now = START - timedelta(minutes=30)
    assert decide(now, {"vote:7d", "vote:1d"}, catch_up_h=2) == ["fire 2h"]
    assert decide(now, {"vote:7d", "vote:1d"}, catch_up_h=1)[0] == "skip 2h missed"


def test_a_fired_alert_is_never_decided_again() -> None:
    keys = {a.key for a in PLAN}
    assert decide(START + timedelta(days=3), keys) == []


def test_skips_carry_a_reason_for_status() -> None:
    (action,) = due_actions(
        PLAN[:1], {"vote": START}, set(), now=START + timedelta(hours=1), catch_up=timedelta(0)
    )
    assert isinstance(action, Skip)
    assert action.reason is SkipReason.STALE


@pytest.mark.parametrize(
    ("reminder", "after_start", "first", "expected"),
    [
        ("1d", timedelta(seconds=-1), False, False),  # before the start, retries go on
        ("1d", timedelta(0), True, True),
        ("0", timedelta(minutes=14), True, False),  # first attempts within stale_after
        ("0", timedelta(minutes=15), True, True),
        ("0", timedelta(minutes=1), False, True),  # no retry once the event started
        ("2h", timedelta(minutes=1), True, True),
    ],
    ids=["before", "1d-at-start", "zero-first", "zero-too-late", "zero-retry", "2h-after"],
)
def test_is_stale(reminder: str, after_start: timedelta, first: bool, expected: bool) -> None:
    now = START + after_start
    stale = is_stale(
        reminder, START, now=now, first_attempt=first, stale_after=timedelta(minutes=15)
    )
    assert stale is expected


@pytest.mark.parametrize(
    ("reminder", "lead", "expected"),
    [
        ("1d", timedelta(hours=3), "3h"),  # delayed by retries: "in 3 hours"
        ("1d", timedelta(hours=22), "1d"),  # still rounds to a day: "tomorrow"
        ("1d", timedelta(hours=25), "1d"),  # 25 h across the autumn DST change
        ("2h", timedelta(minutes=40), "40m"),
        ("2h", timedelta(hours=1, minutes=40), "2h"),
        ("7d", timedelta(days=2, hours=1), "2d"),
        ("1w", timedelta(days=7), "1w"),
        ("0", timedelta(minutes=-3), "0"),
        ("1m", timedelta(seconds=-3), "0"),
    ],
)
def test_lead_label_follows_the_real_lead(reminder: str, lead: timedelta, expected: str) -> None:
    assert lead_label(reminder, START, now=START - lead) == expected
