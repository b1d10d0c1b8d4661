"""`campaignbot send` and `campaignbot status` through the real CLI, SMTP server and SQLite."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from campaignbot.cli import cli
from campaignbot.storage.database import open_database
from campaignbot.storage.tables import alerts, deliveries
from tests.campaign_files import event_toml, write_campaign
from tests.conftest import REPO
from tests.fixtures.smtp import ThreadedSMTPServer
from tests.integration.test_ledger import insert_subscribers


@dataclass
class Setup:
    server: ThreadedSMTPServer
    url: str
    env: dict[str, str]

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=self.env)

    def received(self) -> Counter[str]:
        return Counter(r for m in self.server.messages for r in m.rcpt_tos)

    def count(self, table: Any) -> int:
        async def read() -> int:
            db = open_database(self.url)
            try:
                async with db.engine.connect() as conn:
                    query = select(func.count()).select_from(table)
                    return int((await conn.execute(query)).scalar_one())
            finally:
                await db.dispose()

        return asyncio.run(read())


async def _prepare(url: str, n: int) -> None:
    db = open_database(url)
    try:
        await db.upgrade()
        await insert_subscribers(db, n)
    finally:
        await db.dispose()


@pytest.fixture
def setup(tmp_path: Path, smtp_server_thread: Callable[..., ThreadedSMTPServer]) -> Iterator[Setup]:
    server = smtp_server_thread()
    when = datetime.now(UTC) + timedelta(days=20)
    config = write_campaign(tmp_path / "campaign.toml", event_toml("vote", when))
    url = f"sqlite:///{tmp_path / 'campaignbot.db'}"
    asyncio.run(_prepare(url, 25))
    env = {
        "CAMPAIGNBOT_CONFIG": str(config),
        "CAMPAIGNBOT_TEMPLATES": str(REPO / "templates"),
        "CAMPAIGNBOT_DATABASE_URL": url,
        "CAMPAIGNBOT_SECRET_KEY": "test-secret-0123456789abcdef0123456789",
        **server.env(),
    }
    yield Setup(server, url, env)


def test_send_fires_the_alert_once_and_prints_a_summary(setup: Setup) -> None:
    result = setup.run("send", "vote", "--reminder", "1d", "--yes")
    assert result.exit_code == 0, result.output
    assert "vote:1d: 25 sent, 0 failed, 0 skipped, 0 retry" in result.output
    assert set(setup.received().values()) == {1} and len(setup.received()) == 25
    again = setup.run("send", "vote", "--reminder", "1d", "--yes")
    assert again.exit_code == 0, again.output
    assert "fired before" in again.output
    assert len(setup.server.messages) == 25
    assert setup.count(deliveries) == 25


def test_status_reports_counts_per_alert(setup: Setup) -> None:
    setup.server.fail("RCPT", "550 5.1.1 no such user", recipient="s3@example.org")
    setup.server.fail("RCPT", "451 4.3.0 later", recipient="s4@example.org")
    sent = setup.run("send", "vote", "-r", "0", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "vote:0: 23 sent, 1 failed, 0 skipped, 1 retry" in sent.output
    result = setup.run("status", "--json")
    assert result.exit_code == 0, result.output
    [line] = json.loads(result.output)
    assert {k: line[k] for k in ("event", "reminder", "sent", "pending", "retry", "failed")} == {
        "event": "vote",
        "reminder": "0",
        "sent": 23,
        "pending": 0,
        "retry": 1,
        "failed": 1,
    }
    assert (line["uncertain"], line["skipped"]) == (0, 0)
    assert datetime.fromisoformat(line["due"]).tzinfo is not None
    table = setup.run("status")
    assert table.exit_code == 0 and "vote" in table.output and "23" in table.output


def test_dry_run_shows_audience_and_sample_without_sending_or_writing(setup: Setup) -> None:
    result = setup.run("send", "vote", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "to 25 subscriber(s)" in result.output and "Subject:" in result.output
    assert not setup.server.messages
    assert setup.count(alerts) == 0


def test_to_sends_one_test_message_without_touching_the_ledger(setup: Setup) -> None:
    result = setup.run("send", "vote", "--reminder", "1d", "--to", "organizer@example.net")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in setup.server.messages] == [["organizer@example.net"]]
    assert setup.count(alerts) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "nope"], "unknown event 'nope'"),
        (["send", "vote", "--reminder", "3d"], "unknown reminder '3d'"),
        (["send", "vote", "--to", "not an address"], "--to: invalid email"),
    ],
    ids=["event", "reminder", "address"],
)
def test_bad_input_is_one_line_and_exit_2(setup: Setup, args: list[str], message: str) -> None:
    result = setup.run(*args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_an_unreachable_transport_exits_1_and_records_nothing(setup: Setup) -> None:
    setup.server.stop()
    result = setup.run("send", "vote", "--yes")
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert setup.count(alerts) == 0


def test_audience_send_without_a_terminal_or_yes_sends_nothing(setup: Setup) -> None:
    result = setup.run("send", "vote", "-r", "0")
    assert result.exit_code == 2, result.output
    assert "would send to 25 subscribers; no terminal to ask, nothing sent" in result.output
    assert "--yes" in result.output
    assert not setup.server.messages
    assert setup.count(alerts) == 0


def test_sending_before_the_due_time_warns_and_says_when(setup: Setup) -> None:
    result = setup.run("send", "vote", "-r", "1d", "--yes")
    assert result.exit_code == 0, result.output
    assert "warning: vote:1d is due " in result.output and "UTC (in 18 d" in result.output


def test_to_defaults_to_the_reminder_preview_shows(setup: Setup) -> None:
    # the campaign's reminders are ["1d", "0"]: preview (and now send --to) take the first
    result = setup.run("send", "vote", "--to", "organizer@example.net")
    assert result.exit_code == 0, result.output
    assert "Sent test message vote:1d to organizer@example.net" in result.output
    assert len(setup.server.messages) == 1
    dry = setup.run("send", "vote", "--to", "organizer@example.net", "--dry-run")
    assert "Would send vote:1d to organizer@example.net" in dry.output


def test_dry_run_lists_the_first_rows_and_json_lists_all(setup: Setup) -> None:
    result = setup.run("send", "vote", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "s0@example.org" in result.output and "... and 15 more" in result.output
    as_json = setup.run("send", "vote", "--dry-run", "--json")
    assert as_json.exit_code == 0, as_json.output
    listing = json.loads(as_json.output)
    assert listing["audience"] == 25 and len(listing["subscribers"]) == 25
    assert not setup.server.messages


def test_send_json_prints_the_counts(setup: Setup) -> None:
    result = CliRunner().invoke(cli, ["send", "vote", "-r", "0", "--yes", "--json"], env=setup.env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary == {"alert": "vote:0", "sent": 25, "failed": 0, "skipped": 0, "retry": 0}


def test_audience_send_without_a_database_creates_none(setup: Setup, tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere" / "campaignbot.db"
    env = setup.env | {"CAMPAIGNBOT_DATABASE_URL": f"sqlite:///{missing}"}
    result = CliRunner().invoke(cli, ["send", "vote", "--yes"], env=env)
    assert result.exit_code == 2
    assert "no database here" in result.output
    assert not missing.exists()


@pytest.mark.parametrize(("answer", "code", "sent"), [("n", 2, 0), ("y", 0, 25)], ids=["no", "yes"])
def test_audience_send_on_a_terminal_asks_first(
    setup: Setup, answer: str, code: int, sent: int
) -> None:
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    os.write(master, f"{answer}\n".encode())
    proc = subprocess.run(
        [sys.executable, "-m", "campaignbot", "send", "vote", "-r", "0"],
        stdin=slave,
        capture_output=True,
        text=True,
        env=os.environ | setup.env,
        timeout=60,
        check=False,
    )
    os.close(slave)
    os.close(master)
    assert 'Send "Vote vote" (0) to 25 subscribers now? [y/N]' in proc.stderr
    assert proc.returncode == code, proc.stderr
    assert len(setup.server.messages) == sent


def test_status_failed_lists_address_code_and_reason(setup: Setup) -> None:
    setup.server.fail("RCPT", "550 5.1.1 no such user", recipient="s3@example.org")
    assert setup.run("send", "vote", "-r", "0", "--yes").exit_code == 0
    result = setup.run("status", "--failed")
    assert result.exit_code == 0, result.output
    assert "s3@example.org" in result.output and "550" in result.output
    assert "no such user" in result.output
    as_json = json.loads(setup.run("status", "--failed", "--json").output)
    assert [(f["email"], f["code"], f["alert"]) for f in as_json] == [
        ("s3@example.org", 550, "vote:0")
    ]
    assert "no such user" in as_json[0]["reason"]


def test_status_shows_upcoming_alerts_with_due_time_and_audience(setup: Setup) -> None:
    result = setup.run("status")
    assert result.exit_code == 0, result.output
    assert "upcoming alerts" in result.output
    due = datetime.now(UTC) + timedelta(days=19)
    assert f"{due:%Y-%m-%d}" in result.output  # the 1d reminder
    line = next(line for line in result.output.splitlines() if " 1d " in line)
    assert line.rstrip(" │").endswith("25")


def test_status_event_shows_each_reminder_of_that_event(setup: Setup) -> None:
    assert setup.run("send", "vote", "-r", "1d", "--yes").exit_code == 0
    result = setup.run("status", "vote")
    assert result.exit_code == 0, result.output
    fired = next(line for line in result.output.splitlines() if " 1d " in line)
    assert "25" in fired and "fired" in fired
    upcoming = [line for line in result.output.splitlines() if " 0 │" in line]
    assert upcoming and upcoming[-1].rstrip(" │").endswith("25")  # "0" is still to come
    unknown = setup.run("status", "nope")
    assert unknown.exit_code == 2 and "unknown event 'nope'" in unknown.output


def test_status_numeric_columns_hold_only_numbers(setup: Setup) -> None:
    async def skip() -> None:
        from campaignbot.campaign.planning import PlannedAlert
        from campaignbot.delivery.ledger import Ledger

        db = open_database(setup.url)
        try:
            now = datetime.now(UTC)
            alert = PlannedAlert(now - timedelta(days=1), "vote", "7d", now)
            await Ledger(db, owner="t").skip_alert(alert, now=now, reason="missed")
        finally:
            await db.dispose()

    asyncio.run(skip())
    result = setup.run("status")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "7d" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert all(c.isdigit() or c == "·" for c in cells[3:12]), cells
    assert cells[12] == "missed (too late)"
