"""The campaign file: the shipped one is valid, broken copies give one-line errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaignbot.campaign.model import (
    Campaign,
    UnknownEventError,
    load_campaign,
    localize,
    parse_campaign,
    parse_offset,
)
from campaignbot.delivery.event_state import load_snapshot, snapshot
from campaignbot.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "campaign.toml"

MINIMAL = """\
[campaign]
name = "Stay in the Mine Ban Treaty"
sender = "Mine Ban Alerts <alerts@example.org>"
timezone = "Europe/Helsinki"

[[events]]
id = "a"
title = "A"
when = 2030-01-01

[[events]]
id = "b"
title = { en = "B", fi = "B fi" }
when = 2030-06-17T10:00:00
timezone = "Europe/Helsinki"
"""


def test_shipped_campaign_is_valid_and_has_an_upcoming_event() -> None:
    campaign = load_campaign(SHIPPED)
    ids = {e.id for e in campaign.events}
    assert {"fi-final-vote", "baltic-deposit", "lt-ccm-withdrawal-effective"} <= ids
    assert {"en", "fi", "pl"} <= set(campaign.locales)


def test_minimal_campaign_takes_campaign_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    campaign = load_campaign(path)
    a = campaign.event("a")
    assert a.all_day
    assert str(a.timezone) == "Europe/Helsinki"
    assert [o.label for o in a.reminders] == ["7d", "1d", "0"]
    assert campaign.campaign.catch_up_duration.total_seconds() == 6 * 3600


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_campaign(path)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'timezone = "Europe/Helsinki"\n"""',
            'timezone = "Europe/Helsenki"\n"""',
            "events[1].when: unknown time zone 'Europe/Helsenki'",
        ),
        ('id = "b"', 'id = "a"', "events[1].id: duplicate event id 'a' (first at events[0])"),
        ('title = "A"', 'title = ""', "events[0].title: must not be empty"),
        ('title = "A"', 'title = "A"\ncolour = "red"', "events[0].colour: unknown key"),
        ("when = 2030-01-01", 'when = 2030-01-01\nreminders = ["1x"]', "events[0].reminders"),
        ('fi = "B fi"', 'xx = "B"', "events[1].title: unknown locale 'xx'"),
        ("when = 2030-01-01", "", "events[0].when: missing"),
        ("when = 2030-01-01", 'when = "2030-13-45"', "events[0].when: bad date '2030-13-45'"),
        ('name = "Stay', 'nmae = "Stay', "campaign.nmae: unknown key"),
        ('timezone = "Europe/Helsinki"\n\n', "\n", "campaign.timezone: missing"),
        (
            "when = 2030-06-17T10:00:00",
            "when = 2027-03-28T03:30:00",
            (
                "events[1].when: 03:30 does not exist in Europe/Helsinki on 2027-03-28: "
                "clocks jump from 03:00 to 04:00"
            ),
        ),
        (
            "when = 2030-06-17T10:00:00",
            "when = 2026-10-25T03:30:00",
            (
                "events[1].when: 03:30 happens twice in Europe/Helsinki on 2026-10-25: "
                "write +03:00 or +02:00"
            ),
        ),
        (
            'timezone = "Europe/Helsinki"\n\n',
            'timezone = "Europe/Helsinki"\nsend_at = "03:30"\nreminders = ["1d", "0"]\n\n',
            "events[0].when: send_at 03:30 does not exist in Europe/Helsinki on 2027-03-28",
        ),
    ],
    ids=[
        "unknown-zone",
        "duplicate-id",
        "empty-title",
        "unknown-key",
        "bad-offset",
        "unknown-locale",
        "missing-when",
        "bad-date",
        "campaign-unknown-key",
        "missing-campaign-zone",
        "when-in-dst-gap",
        "when-in-dst-fold",
        "send-at-in-dst-gap",
    ],
)
def test_broken_campaign_gives_one_line_errors(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = (MINIMAL + '"""').replace(old, new, 1).removesuffix('"""')
    if "send_at" in new:  # the all-day event on the day after the spring DST change
        text = text.replace("when = 2030-01-01", "when = 2027-03-29")
    assert text != MINIMAL
    problems = _problems(tmp_path, text)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{tmp_path / 'campaign.toml'}: ") for p in problems)
    assert all("\n" not in p for p in problems)


def test_local_time_without_any_zone_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL.replace('timezone = "Europe/Helsinki"\n\n', "\n", 1)
    problems = _problems(tmp_path, text)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "campaign.timezone: missing",
        "events[0].when: missing time zone",
    ]


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, MINIMAL.replace('id = "b"', 'id = = "b"'))
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'campaign.toml'}: line 12: invalid TOML")


def test_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_campaign(tmp_path / "nope.toml")
    assert (
        str(info.value) == f"{tmp_path / 'nope.toml'}: cannot read file: No such file or directory"
    )


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    text = MINIMAL.replace('title = "A"', 'title = ""').replace('id = "b"', 'id = "B B"')
    problems = _problems(tmp_path, text)
    assert len(problems) == 2


@pytest.mark.parametrize("text", ["1", "d", "-1d", "1.5d", "1y", "01d", " ", ""])
def test_bad_offsets_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="bad offset"):
        parse_offset(text)


@given(st.integers(1, 99999), st.sampled_from("wdhm"))
def test_offsets_round_trip(amount: int, unit: str) -> None:
    assert parse_offset(f"{amount}{unit}").label == f"{amount}{unit}"


def test_localize_falls_back_to_language_then_default() -> None:
    text = {"en": "hello", "fi": "moi"}
    assert localize(text, "fi_FI", "en") == "moi"
    assert localize(text, "pl", "en") == "hello"
    assert localize({"": "any"}, "pl", "en") == "any"


@pytest.mark.parametrize("source", ["shipped", "minimal"])
def test_every_event_survives_its_database_snapshot(tmp_path: Path, source: str) -> None:
    """Notices about deleted events are written from `snapshot`: it must give the event back."""
    path = SHIPPED if source == "shipped" else tmp_path / "c.toml"
    if source == "minimal":
        path.write_text(
            MINIMAL
            + """
[[events]]
id = "c"
title = "C"
when = 2030-03-01T09:00:00+02:00
status = "postponed"
reminders = ["2w", "3h", "0"]
action = { text = "Act", url = "https://example.org/act" }
audience = { countries = ["FI"], topics = ["votes"] }
"""
        )
    for event in load_campaign(path).events:
        assert load_snapshot(snapshot(event)) == event


def _campaign_with(**keys: object) -> Campaign:
    base: dict[str, object] = {"name": "T", "sender": "A <a@b.org>", "timezone": "UTC"}
    return parse_campaign({"campaign": {**base, **keys}, "events": []}, source="t.toml")


def test_name_sender_name_and_organization_are_per_locale() -> None:
    info = _campaign_with(
        name={"en": "Stay", "fi": "Pysytään"},
        sender_name={"en": "Alerts", "pl": "Powiadomienia"},
        organization="Network, Street 1, Helsinki",
    ).campaign
    assert info.name == "Stay" and info.name_for("fi") == "Pysytään"
    assert info.name_for("lv") == "Stay"  # falls back to the default locale
    assert info.sender_name_for("pl_PL") == "Powiadomienia"
    assert info.organization_for("et") == "Network, Street 1, Helsinki"
    assert info.privacy_link("https://x.example/") == "https://x.example/privacy"
    plain = _campaign_with().campaign
    assert plain.sender_name_for("fi") == "A" and plain.organization_for("fi") == ""
    assert _campaign_with(privacy_url="https://p.example/").campaign.privacy_link("x") == (
        "https://p.example/"
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"name": ""}, "t.toml: campaign.name: must not be empty"),
        ({"name": {"xx": "a"}}, "t.toml: campaign.name: unknown locale 'xx'"),
        ({"sender_name": "A\nB"}, "t.toml: campaign.sender_name: must be one line"),
        ({"organization": {"fi": " "}}, "t.toml: campaign.organization: must not be empty"),
        ({"privacy_url": "ftp://x"}, "t.toml: campaign.privacy_url: not an http(s) URL"),
    ],
)
def test_bad_campaign_texts_are_one_line_errors(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _campaign_with(**keys)
    assert str(err.value).startswith(message)


def test_an_offset_datetime_in_a_dst_fold_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text(MINIMAL.replace("2030-06-17T10:00:00", "2026-10-25T03:30:00+02:00"))
    (_, event) = load_campaign(path).events
    assert event.when.utcoffset() == timedelta(hours=2)  # type: ignore[union-attr]


def test_a_local_when_is_zone_aware_after_validation(tmp_path: Path) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text(MINIMAL)
    (_, event) = load_campaign(path).events
    assert event.when == datetime(2030, 6, 17, 10, 0, tzinfo=ZoneInfo("Europe/Helsinki"))
    assert event.when.tzinfo is not None  # type: ignore[union-attr]


def test_campaign_that_is_not_a_table_is_one_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, 'campaign = "x"\n')
    assert problems == [f"{tmp_path / 'campaign.toml'}: campaign: must be a table [campaign]"]


def test_an_unknown_event_is_a_domain_error(tmp_path: Path) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text(MINIMAL)
    with pytest.raises(UnknownEventError, match="unknown event 'zz'"):
        load_campaign(path).event("zz")


def test_stale_after_defaults_to_15_minutes(tmp_path: Path) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text(MINIMAL)
    assert load_campaign(path).campaign.stale_after_duration == timedelta(minutes=15)
