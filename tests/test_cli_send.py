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
    result = setup.run("send", "vote", "--reminder", "1d")
    assert result.exit_code == 0, result.output
    assert "vote:1d: 25 sent, 0 failed, 0 skipped, 0 retry" in result.output
    assert set(setup.received().values()) == {1} and len(setup.received()) == 25
    again = setup.run("send", "vote", "--reminder", "1d")
    assert again.exit_code == 0, again.output
    assert "fired before" in again.output
    assert len(setup.server.messages) == 25
    assert setup.count(deliveries) == 25


def test_status_reports_counts_per_alert(setup: Setup) -> None:
    setup.server.fail("RCPT", "550 5.1.1 no such user", recipient="s3@example.org")
    setup.server.fail("RCPT", "451 4.3.0 later", recipient="s4@example.org")
    sent = setup.run("send", "vote")
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
    result = setup.run("send", "vote")
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert setup.count(alerts) == 0
