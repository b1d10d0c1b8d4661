"""`plan`, `plan --changes`, `status` and `subscribers` where there is, or is not, a database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from campaignbot.campaign.model import load_campaign
from campaignbot.cli import cli
from campaignbot.delivery.event_state import EventState
from campaignbot.storage.database import open_database
from tests.campaign_files import event_toml, write_campaign
from tests.conftest import REPO

WHEN = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "CAMPAIGNBOT_CONFIG": str(tmp_path / "campaign.toml"),
        "CAMPAIGNBOT_TEMPLATES": str(REPO / "templates"),
        "CAMPAIGNBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'campaignbot.db'}",
        "CAMPAIGNBOT_SECRET_KEY": "test-secret-0123456789abcdef0123456789",
    }


def _record(url: str, config: Path) -> None:
    async def record() -> None:
        db = open_database(url)
        try:
            await db.upgrade()
            campaign = load_campaign(config)
            await EventState(db).record(
                campaign.events, send_at=campaign.campaign.send_at, now=datetime.now(UTC)
            )
        finally:
            await db.dispose()

    asyncio.run(record())


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["subscribers", "list"], ["subscribers", "export"]],
    ids=["status", "status-json", "list", "export"],
)
def test_reading_commands_without_a_database_say_so_and_create_none(
    env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    write_campaign(tmp_path / "campaign.toml", event_toml("vote", WHEN))
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert "var/campaignbot.db: no database here" in result.output
    assert not (tmp_path / "var").exists()


def test_plan_without_a_database_shows_the_audience_as_unknown(
    env: dict[str, str], tmp_path: Path
) -> None:
    write_campaign(tmp_path / "campaign.toml", event_toml("vote", WHEN))
    as_json = CliRunner().invoke(cli, ["plan", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.output)
    assert rows and all(r["audience"] is None for r in rows)
    table = CliRunner().invoke(cli, ["plan"], env=env)
    assert table.exit_code == 0, table.output
    assert "unknown" in table.output
    assert not (tmp_path / "var").exists()


def test_plan_changes_against_an_older_file(env: dict[str, str], tmp_path: Path) -> None:
    old = write_campaign(tmp_path / "old.toml", event_toml("vote", WHEN), event_toml("gone", WHEN))
    write_campaign(
        tmp_path / "campaign.toml",
        event_toml("vote", WHEN + timedelta(days=7)),
        event_toml("new", WHEN + timedelta(days=1)),
    )
    result = CliRunner().invoke(
        cli, ["plan", "--changes", "--against", str(old), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["change"], r["event"], r["reminder"]) for r in rows] == [
        ("added", "new", "1d"),
        ("added", "new", "0"),
        ("moved", "vote", "1d"),
        ("moved", "vote", "0"),
        ("removed", "gone", "1d"),
        ("removed", "gone", "0"),
    ]
    assert all(r["audience"] is None for r in rows)  # no database: unknown
    assert set(rows[0]) == {
        "change", "event", "reminder", "due_utc", "new_due_utc", "notice", "audience"
    }  # fmt: skip
    moved = rows[2]
    assert datetime.fromisoformat(moved["new_due_utc"]) - datetime.fromisoformat(
        moved["due_utc"]
    ) == timedelta(days=7)
    table = CliRunner().invoke(cli, ["plan", "--changes", "--against", str(old)], env=env)
    assert table.exit_code == 0, table.output
    assert "moved: 'vote' 1d " in table.output and " → " in table.output
    assert not (tmp_path / "var").exists()


def test_plan_changes_against_what_the_database_recorded(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = write_campaign(tmp_path / "campaign.toml", event_toml("vote", WHEN))
    _record(env["CAMPAIGNBOT_DATABASE_URL"], config)
    write_campaign(tmp_path / "campaign.toml", event_toml("vote", WHEN + timedelta(days=2)))
    result = CliRunner().invoke(cli, ["plan", "--changes", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["change"], r["reminder"], r["audience"]) for r in rows] == [
        ("moved", "1d", 0),
        ("moved", "0", 0),
    ]


def test_against_needs_changes(env: dict[str, str], tmp_path: Path) -> None:
    config = write_campaign(tmp_path / "campaign.toml", event_toml("vote", WHEN))
    result = CliRunner().invoke(cli, ["plan", "--against", str(config)], env=env)
    assert result.exit_code == 2


def test_plan_title_counts_properly_and_past_ranges_are_not_upcoming(
    env: dict[str, str], tmp_path: Path
) -> None:
    write_campaign(tmp_path / "campaign.toml", event_toml("vote", WHEN, reminders=["0"]))
    one = CliRunner().invoke(cli, ["plan"], env=env)
    assert "1 upcoming alert\n" in one.output or "1 upcoming alert " in one.output
    past = CliRunner().invoke(
        cli, ["plan", "--from", "2020-01-01", "--until", (WHEN + timedelta(days=1)).isoformat()],
        env=env,
    )  # fmt: skip
    assert "upcoming" not in past.output.splitlines()[0]
