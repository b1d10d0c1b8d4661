"""`campaignbot run` as a real process: real clock, real SMTP server, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaignbot.storage.database import open_database
from campaignbot.subscribers.model import SubscriberInput
from campaignbot.subscribers.store import SubscriberStore
from tests.campaign_files import event_toml, write_campaign
from tests.processes import RunningBot, free_port, warm_up

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture
def bot_env(tmp_path: Path, smtp_server_thread: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    warm_up()  # before the test computes due times from the clock
    server = smtp_server_thread()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env.update(server.env())
    env.update(
        CAMPAIGNBOT_CONFIG=str(tmp_path / "campaign.toml"),
        CAMPAIGNBOT_TEMPLATES=str(REPO / "templates"),
        CAMPAIGNBOT_DATABASE_URL=f"sqlite:///{tmp_path}/campaignbot.db",
        CAMPAIGNBOT_SECRET_KEY="e2e-secret-0123456789abcdef0123456789",
        CAMPAIGNBOT_HTTP__PORT=str(free_port()),
        CAMPAIGNBOT_ADMIN__PORT=str(free_port()),
        CAMPAIGNBOT_LEASE_S="2",
    )
    bots: list[RunningBot] = []

    def start() -> RunningBot:
        bot = RunningBot(env, tmp_path)
        bots.append(bot)
        bot.wait_for_log("started")
        return bot

    yield {"env": env, "server": server, "start": start, "dir": tmp_path}
    for bot in bots:
        bot.close()


def add_subscribers(url: str, specs: list[tuple[str, str, str]]) -> None:
    async def add() -> None:
        db = open_database(url)
        await db.upgrade()
        store = SubscriberStore(db)
        now = datetime.now(UTC)
        for email, locale, country in specs:
            entry = SubscriberInput.create(
                email, locale=locale, timezone="Europe/Warsaw", countries=[country]
            )
            await store.add(entry, now=now, source="test")
        await db.dispose()

    asyncio.run(add())


def received(server: Any) -> Counter[tuple[str, str]]:
    """(recipient, subject) -> how often it arrived."""
    return Counter((r, m.message["Subject"]) for m in server.messages for r in m.rcpt_tos)


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_every_subscriber_gets_each_due_reminder_exactly_once(bot_env: dict[str, Any]) -> None:
    env, server = bot_env["env"], bot_env["server"]
    config = Path(env["CAMPAIGNBOT_CONFIG"])
    write_campaign(
        config,
        event_toml("fi-vote", soon(5), reminders=["0"], countries=["FI"]),
        event_toml("pl-vote", soon(7), reminders=["0"]),
    )
    people = [
        ("aino@example.fi", "fi", "FI"),
        ("ada@example.org", "en", "FI"),
        ("jan@example.pl", "pl", "PL"),
    ]
    add_subscribers(env["CAMPAIGNBOT_DATABASE_URL"], people)
    bot = bot_env["start"]()
    assert "next alert fi-vote:0" in bot.log
    server.wait_for_messages(5, timeout_s=20)
    bot.wait_for_log("pl-vote:0: completed")
    time.sleep(1)  # nothing more may arrive
    counts = received(server)
    assert sum(counts.values()) == 5
    assert all(n == 1 for n in counts.values()), counts
    by_person = Counter(r for r, _ in counts)
    assert by_person == {"aino@example.fi": 2, "ada@example.org": 2, "jan@example.pl": 1}
    subjects = {r: s for r, s in counts if "pl-vote" in s or "pl-vote" in r}
    assert any("Głosowanie" in s for s in subjects.values()), subjects
    assert bot.stop() == 0, bot.log
    assert "stopped" in bot.log
    # a restart sends nothing again
    bot = bot_env["start"]()
    time.sleep(1.5)
    assert sum(received(server).values()) == 5
    assert bot.stop() == 0, bot.log


def test_edits_under_the_running_service(bot_env: dict[str, Any]) -> None:
    env, server = bot_env["env"], bot_env["server"]
    config = Path(env["CAMPAIGNBOT_CONFIG"])
    far = soon(3 * 86400)
    add_subscribers(env["CAMPAIGNBOT_DATABASE_URL"], [("ada@example.org", "en", "FI")])
    fi_vote = soon(2)
    write_campaign(config, event_toml("fi-vote", fi_vote, reminders=["0", "1d"]))
    bot = bot_env["start"]()
    server.wait_for_messages(1, timeout_s=15)

    # a new event due in two seconds
    ee_vote = soon(2)
    write_campaign(
        config,
        event_toml("fi-vote", fi_vote, reminders=["1d"]),
        event_toml("ee-vote", ee_vote, reminders=["0"]),
    )
    bot.wait_for_log("config reloaded")
    server.wait_for_messages(2, timeout_s=15)

    # an invalid edit: logged, nothing changes
    config.write_text(config.read_text().replace("Europe/Helsinki", "Europe/Helsenki"))
    bot.wait_for_log("unknown time zone 'Europe/Helsenki'")
    bot.wait_for_log("running schedule is unchanged")

    # the already-alerted event moves: one notice
    write_campaign(
        config,
        event_toml("fi-vote", far, reminders=["1d"]),
        event_toml("ee-vote", ee_vote, reminders=["0"]),
    )
    bot.wait_for_log("event fi-vote rescheduled: notice to 1 subscribers")
    server.wait_for_messages(3, timeout_s=15)

    # and is then cancelled: a second notice
    write_campaign(
        config,
        event_toml("fi-vote", far, reminders=["1d"], status="cancelled"),
        event_toml("ee-vote", ee_vote, reminders=["0"]),
    )
    bot.wait_for_log("event fi-vote cancelled: notice to 1 subscribers")
    server.wait_for_messages(4, timeout_s=15)
    time.sleep(1)
    assert len(server.messages) == 4, [(m.message["Subject"], m.rcpt_tos) for m in server.messages]
    assert bot.stop(signal.SIGINT) == 0, bot.log


def test_sighup_reloads(bot_env: dict[str, Any]) -> None:
    env = bot_env["env"]
    write_campaign(Path(env["CAMPAIGNBOT_CONFIG"]), event_toml("fi-vote", soon(3600)))
    bot = bot_env["start"]()
    bot.proc.send_signal(signal.SIGHUP)
    bot.wait_for_log("config reloaded (SIGHUP)")
    assert bot.stop() == 0, bot.log


def test_sigkill_during_a_large_send_loses_nothing(bot_env: dict[str, Any]) -> None:
    env, server = bot_env["env"], bot_env["server"]
    n = 1500
    add_subscribers(
        env["CAMPAIGNBOT_DATABASE_URL"],
        [(f"user{i}@example.org", "en", "FI") for i in range(n)],
    )
    write_campaign(Path(env["CAMPAIGNBOT_CONFIG"]), event_toml("fi-vote", soon(1), reminders=["0"]))
    server.fail("DATA", delay_s=0.002)  # slow enough to kill mid-send
    bot = bot_env["start"]()
    server.wait_for_messages(300, timeout_s=30)
    bot.stop(signal.SIGKILL)
    at_kill = len(server.messages)
    assert at_kill < n, "the send finished before the kill; make the server slower"
    server.faults.clear()
    time.sleep(2.5)  # the dead process's leases expire (CAMPAIGNBOT_LEASE_S=2)
    bot = bot_env["start"]()
    server.wait_for_messages(n, timeout_s=60)
    bot.wait_for_log("fi-vote:0: completed")
    counts = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert set(counts) == {f"user{i}@example.org" for i in range(n)}
    duplicates = sum(c - 1 for c in counts.values())
    # at most the messages in flight at the kill: one per connection (default 8)
    assert duplicates <= 8, duplicates
    assert bot.stop() == 0, bot.log
