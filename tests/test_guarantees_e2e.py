"""The delivery promises with `campaignbot run` as a process: real clock, real SMTP server, real signals.

Each scenario runs on SQLite and on PostgreSQL (a database of its own, dropped after)
and asserts on what the SMTP server received.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from campaignbot.delivery.ledger import Ledger
from campaignbot.storage.database import open_database
from campaignbot.storage.tables import deliveries
from tests.campaign_files import event_toml, write_campaign
from tests.fixtures.db import POSTGRES_ENV, _admin
from tests.kill_scenario import bot_env, kill_run
from tests.processes import RunningBot, warm_up
from tests.test_service_e2e import add_subscribers

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for `campaignbot run` (migrated by the service itself)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'campaignbot.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = f"campaignbot_e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def run(
    url: str, tmp_path: Path, smtp_server_thread: Callable[..., Any]
) -> Iterator[dict[str, Any]]:
    warm_up()
    server = smtp_server_thread()
    env = bot_env(server, url, tmp_path, max_connections=4)
    bots: list[RunningBot] = []

    def start() -> RunningBot:
        bot = RunningBot(env, tmp_path)
        bots.append(bot)
        bot.wait_for_log("started")
        return bot

    yield {"server": server, "start": start, "config": tmp_path / "campaign.toml", "url": url}
    for bot in bots:
        bot.close()


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def alert_states(url: str) -> dict[str, tuple[str, int, int, int]]:
    """alert key -> (status, sent, skipped, of which stale), as `campaignbot status` reads it."""

    async def read() -> dict[str, tuple[str, int, int, int]]:
        db = open_database(url)
        try:
            summary = await Ledger(db, owner="test").status_summary(now=datetime.now(UTC))
        finally:
            await db.dispose()
        return {
            a.key: (a.status, a.sent, a.skipped, getattr(a, "stale", -1)) for a in summary.alerts
        }

    return asyncio.run(read())


def delivery_statuses(url: str) -> list[str]:
    async def read() -> list[str]:
        db = open_database(url)
        try:
            async with db.engine.connect() as conn:
                return [str(s) for s in (await conn.execute(select(deliveries.c.status))).scalars()]
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_downtime_across_the_start_sends_nothing_and_status_shows_skipped(
    run: dict[str, Any],
) -> None:
    # the service was down while '1m' and '0' fell due; it is back 30 s after the start
    write_campaign(run["config"], event_toml("vote", soon(-30), reminders=["1m", "0"]))
    add_subscribers(run["url"], [("ada@example.org", "en", "FI"), ("bo@example.org", "fi", "FI")])
    bot = run["start"]()
    time.sleep(1.5)
    assert run["server"].messages == []
    assert alert_states(run["url"]) == {
        "vote:1m": ("skipped", 0, 0, 0),
        "vote:0": ("skipped", 0, 0, 0),
    }
    assert bot.stop() == 0, bot.log


def test_sigkill_at_40_percent_of_3000_duplicates_at_most_max_connections(
    url: str, tmp_path: Path, smtp_server_thread: Callable[..., Any]
) -> None:
    warm_up()
    result = kill_run(smtp_server_thread(), url, tmp_path, n=3000, kill_at=0.4, max_connections=4)
    print(result)
    assert result.lost == 0
    assert result.received_at_kill < result.subscribers
    assert result.duplicates <= 4, result
    assert result.max_concurrent <= 4, result


def test_a_retry_that_crosses_the_start_is_not_sent(run: dict[str, Any]) -> None:
    server = run["server"]
    # '1m' before an event 15 s away fell due 45 s ago: caught up at start-up, refused
    write_campaign(run["config"], event_toml("vote", soon(15), reminders=["1m"]))
    add_subscribers(run["url"], [("ada@example.org", "en", "FI")])
    refused = server.fail("RCPT", "451 4.3.0 try later")
    bot = run["start"]()
    deadline = time.monotonic() + 10
    while refused.hits == 0:
        assert time.monotonic() < deadline, bot.log
        time.sleep(0.05)
    server.faults.clear()  # the retry (about 30 s later, after the start) would succeed
    deadline = time.monotonic() + 50
    while delivery_statuses(run["url"]) != ["skipped"]:
        assert time.monotonic() < deadline, bot.log
        time.sleep(0.5)
    time.sleep(1)
    assert server.messages == []
    assert alert_states(run["url"]) == {"vote:1m": ("fired", 0, 1, 1)}
    assert bot.stop() == 0, bot.log


def test_a_date_correction_by_90_s_after_a_reminder_sends_one_notice(
    run: dict[str, Any],
) -> None:
    server = run["server"]
    vote = soon(63)  # its '1m' reminder is due in 3 s
    write_campaign(run["config"], event_toml("vote", vote, reminders=["1m"]))
    add_subscribers(run["url"], [("ada@example.org", "en", "FI")])
    bot = run["start"]()
    server.wait_for_messages(1, timeout_s=20)
    write_campaign(
        run["config"], event_toml("vote", vote + timedelta(seconds=90), reminders=["1m"])
    )
    bot.wait_for_log("config reloaded")
    server.wait_for_messages(2, timeout_s=20)
    time.sleep(2)
    received = Counter((r, m.message["Subject"]) for m in server.messages for r in m.rcpt_tos)
    assert len(server.messages) == 2, received
    reminder, notice = (m.message for m in server.messages)
    assert notice["To"] == "ada@example.org"
    assert notice["Subject"] != reminder["Subject"]
    assert bot.stop() == 0, bot.log
