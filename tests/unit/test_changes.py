"""`plan_changes`: added, moved, removed, stale reminders and change notices (pure)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from campaignbot.campaign.changes import ChangeKind, NoticeKind, PlanChange, plan_changes
from campaignbot.campaign.model import Event, load_campaign
from tests.campaign_files import event_toml, write_campaign

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SEND_AT = time(9, 0)


Make = Callable[..., list[Event]]


@pytest.fixture
def events(tmp_path: Path) -> Make:
    """Events parsed from small campaign files, as the organizer would write them."""
    counter = iter(range(1000))

    def make(*tomls: str) -> list[Event]:
        path = write_campaign(tmp_path / f"c{next(counter)}.toml", *tomls)
        return list(load_campaign(path).events)

    return make


def changes(
    old: list[Event], new: list[Event], *, fired: set[str] | None = None, now: datetime = NOW
) -> list[PlanChange]:
    fired = fired or set()
    alerted = {key.split(":")[0] for key in fired}
    return plan_changes(
        old,
        new,
        send_at=SEND_AT,
        now=now,
        catch_up=timedelta(hours=6),
        fired=fired,
        alerted=alerted,
    )


def summary(found: list[PlanChange]) -> list[tuple[str, str, str | None]]:
    return [
        (c.change.value, c.event_id, c.reminder or (c.notice and c.notice.value)) for c in found
    ]


def test_nothing_changed_gives_no_lines(events: Make) -> None:
    same = event_toml("vote", NOW + timedelta(days=10))
    assert changes(events(same), events(same)) == []


def test_an_added_event_adds_its_reminders(events: Make) -> None:
    a = event_toml("a", NOW + timedelta(days=10))
    b = event_toml("b", NOW + timedelta(days=5))
    found = changes(events(a), events(a, b))
    assert summary(found) == [("added", "b", "1d"), ("added", "b", "0")]
    assert found[0].due_utc is None and found[0].new_due_utc == NOW + timedelta(days=4)


def test_a_moved_event_moves_its_reminders_and_notifies_the_alerted(events: Make) -> None:
    old = events(event_toml("vote", NOW + timedelta(days=10), reminders=["14d", "1d", "0"]))
    new = events(event_toml("vote", NOW + timedelta(days=17), reminders=["14d", "1d", "0"]))
    found = changes(old, new, fired={"vote:14d"})
    assert summary(found) == [
        ("moved", "vote", "1d"),
        ("moved", "vote", "0"),
        ("notice", "vote", "rescheduled"),
    ]
    assert found[0].due_utc == NOW + timedelta(days=9)
    assert found[0].new_due_utc == NOW + timedelta(days=16)
    notice = found[2]
    assert (notice.due_utc, notice.new_due_utc) == (
        NOW + timedelta(days=10),
        NOW + timedelta(days=17),
    )
    # "14d" was sent already: it never goes out again, wherever the event moves


def test_no_notice_when_nobody_was_alerted_yet(events: Make) -> None:
    old = events(event_toml("vote", NOW + timedelta(days=10)))
    new = events(event_toml("vote", NOW + timedelta(days=12)))
    assert [c.change for c in changes(old, new)] == [ChangeKind.MOVED, ChangeKind.MOVED]


def test_a_cancelled_event_removes_its_reminders_and_sends_a_notice(events: Make) -> None:
    old = events(event_toml("vote", NOW + timedelta(days=10), reminders=["14d", "1d", "0"]))
    new = events(
        event_toml(
            "vote", NOW + timedelta(days=10), reminders=["14d", "1d", "0"], status="cancelled"
        )
    )
    found = changes(old, new, fired={"vote:14d"})
    assert summary(found) == [
        ("removed", "vote", "1d"),
        ("removed", "vote", "0"),
        ("notice", "vote", "cancelled"),
    ]
    assert found[-1].notice is NoticeKind.CANCELLED


def test_a_deleted_event_is_a_cancellation_for_those_alerted(events: Make) -> None:
    keep = event_toml("keep", NOW + timedelta(days=20))
    gone = event_toml("gone", NOW + timedelta(days=10), reminders=["14d", "1d", "0"])
    found = changes(events(keep, gone), events(keep), fired={"gone:14d"})
    assert summary(found) == [
        ("removed", "gone", "1d"),
        ("removed", "gone", "0"),
        ("notice", "gone", "cancelled"),
    ]
    assert found[-1].new_due_utc is None


def test_postponed_gets_a_postponed_notice(events: Make) -> None:
    when = NOW + timedelta(days=10)
    old = events(event_toml("vote", when, reminders=["14d", "1d"]))
    new = events(event_toml("vote", when, reminders=["14d", "1d"], status="postponed"))
    found = changes(old, new, fired={"vote:14d"})
    assert summary(found) == [("removed", "vote", "1d"), ("notice", "vote", "postponed")]


def test_a_reminder_moved_into_the_past_is_stale(events: Make) -> None:
    # the event moves from 10 days ahead to 2 days ahead: "7d" would have been due 5
    # days ago, far beyond catch-up, so the service records it as skipped
    old = events(event_toml("vote", NOW + timedelta(days=10), reminders=["7d", "1d"]))
    new = events(event_toml("vote", NOW + timedelta(days=2), reminders=["7d", "1d"]))
    found = changes(old, new)
    assert summary(found) == [("moved", "vote", "1d"), ("stale", "vote", "7d")]
    assert found[1].new_due_utc == NOW - timedelta(days=5)


def test_a_reminder_just_overdue_within_catch_up_goes_out_now(events: Make) -> None:
    old = events(event_toml("vote", NOW + timedelta(days=10), reminders=["1d"]))
    new = events(event_toml("vote", NOW + timedelta(days=1, hours=-2), reminders=["1d"]))
    assert summary(changes(old, new)) == [("moved", "vote", "1d")]


def test_a_fired_reminder_is_never_moved_or_removed(events: Make) -> None:
    old = events(event_toml("vote", NOW + timedelta(days=10), reminders=["1d"]))
    new = events(event_toml("vote", NOW + timedelta(days=12), reminders=["1d"]))
    found = changes(old, new, fired={"vote:1d"})
    assert [c.change for c in found] == [ChangeKind.NOTICE]


def test_a_title_edit_is_no_change(events: Make) -> None:
    when = NOW + timedelta(days=10)
    old = events(event_toml("vote", when, reminders=["14d", "1d"]))
    new_text = event_toml("vote", when, reminders=["14d", "1d"]).replace("Vote vote", "The vote")
    assert changes(old, events(new_text), fired={"vote:14d"}) == []
