"""Several `campaignbot run` processes on one PostgreSQL database share the work.

Real processes, a real PostgreSQL database (created for the test, dropped after it)
and a real SMTP server; a process killed with SIGKILL mid-send loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from campaignbot.delivery.sender import BATCH_SIZE
from campaignbot.storage.database import open_database
from campaignbot.storage.tables import deliveries, subscribers
from tests.campaign_files import event_toml, write_campaign
from tests.fixtures.db import POSTGRES_ENV
from tests.processes import RunningBot, free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


async def _admin(base_url: str, sql: str) -> None:
    import asyncpg

    url = make_url(base_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database of its own, dropped after the test."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = f"campaignbot_mp_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def add_subscribers(url: str, n: int) -> None:
    """Migrate, then insert `n` active subscribers in a few multi-row INSERTs."""

    async def add() -> None:
        db = open_database(url)
        try:
            await db.upgrade()
            now = datetime.now(UTC)
            async with db.engine.begin() as conn:
                for start in range(0, n, 5000):
                    rows = [
                        {
                            "email": f"user{i}@example.org",
                            "email_key": f"user{i}@example.org",
                            "name": f"User {i}",
                            "locale": ("en", "fi", "pl")[i % 3],
                            "timezone": "Europe/Helsinki",
                            "countries": ";FI;",
                            "topics": "",
                            "follows_all": True,
                            "status": "active",
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in range(start, min(n, start + 5000))
                    ]
                    await conn.execute(insert(subscribers), rows)
        finally:
            await db.dispose()

    asyncio.run(add())


def delivery_counts(url: str) -> dict[str, int]:
    """Deliveries by status, plus `retaken`: those claimed more than once (lease expired)."""

    async def count() -> dict[str, int]:
        db = open_database(url)
        try:
            async with db.engine.connect() as conn:
                query = select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
                counts = {str(s): int(n) for s, n in await conn.execute(query)}
                query = select(func.count()).where(deliveries.c.attempts > 1)
                counts["retaken"] = int((await conn.execute(query)).scalar_one())
                return counts
        finally:
            await db.dispose()

    return asyncio.run(count())


def sent_by(bot: RunningBot, port: int) -> int:
    """What this process's sender sent, from its own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(
        r'^campaignbot_sender_outcomes_total\{outcome="sent"\} (\S+)$', text, re.MULTILINE
    )
    assert match, f"no sent counter in /metrics of pid {bot.proc.pid}"
    return int(float(match.group(1)))


def recipients(server: Any) -> Counter[str]:
    return Counter(r for m in list(server.messages) for r in m.rcpt_tos)


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def processes(
    tmp_path: Path, postgres_url: str, smtp_server_thread: Callable[..., Any]
) -> Iterator[dict[str, Any]]:
    """`start(k)` starts k `campaignbot run` processes on the same database and SMTP server."""
    server = smtp_server_thread()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env.update(server.env())
    env.update(
        CAMPAIGNBOT_CONFIG=str(tmp_path / "campaign.toml"),
        CAMPAIGNBOT_TEMPLATES=str(REPO / "templates"),
        CAMPAIGNBOT_DATABASE_URL=postgres_url,
        CAMPAIGNBOT_SECRET_KEY="multiprocess-secret-0123456789abcdef0123",
        CAMPAIGNBOT_LEASE_S="3",
    )
    bots: list[tuple[RunningBot, int]] = []

    def start(k: int) -> list[tuple[RunningBot, int]]:
        started = []
        for _ in range(k):
            port = free_port()  # the admin listener, where /metrics is
            ports = {
                "CAMPAIGNBOT_HTTP__PORT": str(free_port()),
                "CAMPAIGNBOT_ADMIN__PORT": str(port),
            }
            bot = RunningBot(env | ports, tmp_path)
            bots.append((bot, port))
            started.append((bot, port))
        for bot, _ in started:
            bot.wait_for_log("started", timeout_s=30)
        return started

    yield {"env": env, "server": server, "url": postgres_url, "start": start}
    for bot, _ in bots:
        bot.close()


def test_three_processes_share_a_large_send_and_survive_a_kill(
    processes: dict[str, Any],
) -> None:
    n = 20_000
    server, url = processes["server"], processes["url"]
    add_subscribers(url, n)
    due = datetime.now(UTC) + timedelta(seconds=6)
    write_campaign(
        Path(processes["env"]["CAMPAIGNBOT_CONFIG"]), event_toml("fi-vote", due, reminders=["0"])
    )
    (victim, victim_port), *survivors = processes["start"](3)
    assert datetime.now(UTC) < due, "the processes started too slowly; move the alert later"

    wait_until(lambda: len(server.messages) >= n // 2, timeout_s=60, what=f"{n // 2} messages")
    victim_sent = sent_by(victim, victim_port)
    victim.stop(signal.SIGKILL)
    at_kill = len(server.messages)
    assert victim_sent > 0, "the killed process had not sent anything"
    assert at_kill < n, "the send finished before the kill"

    # the dead process's leases expire (3 s) and the survivors take its batch over
    everyone = {f"user{i}@example.org" for i in range(n)}
    wait_until(lambda: set(recipients(server)) == everyone, timeout_s=60, what="every recipient")
    wait_until(
        lambda: delivery_counts(url).get("sent") == n, timeout_s=15, what="every delivery sent"
    )
    # the killed process's claimed batch was taken over once its lease expired
    assert 0 < delivery_counts(url)["retaken"] <= BATCH_SIZE
    counts = recipients(server)
    duplicates = sum(c - 1 for c in counts.values())
    # at most the messages in flight at the kill: one per connection of the killed
    # process (CAMPAIGNBOT_SMTP__MAX_CONNECTIONS, default 8)
    assert duplicates <= 8, duplicates
    shares = [sent_by(bot, port) for bot, port in survivors]
    # each survivor did a substantial part of the work (an even split is about 40 % each)
    assert all(share >= n // 5 for share in shares), (victim_sent, shares)
    assert sum(shares) + victim_sent >= n
    for bot, _ in survivors:
        assert bot.stop() == 0, bot.log


def test_two_processes_started_together_send_each_message_once(
    processes: dict[str, Any],
) -> None:
    n = 3_000
    server, url = processes["server"], processes["url"]
    add_subscribers(url, n)
    due = datetime.now(UTC) + timedelta(seconds=6)
    write_campaign(
        Path(processes["env"]["CAMPAIGNBOT_CONFIG"]), event_toml("fi-vote", due, reminders=["0"])
    )
    bots = processes["start"](2)
    assert datetime.now(UTC) < due, "the processes started too slowly; move the alert later"
    server.wait_for_messages(n, timeout_s=60)
    wait_until(
        lambda: delivery_counts(url) == {"sent": n, "retaken": 0},
        timeout_s=15,
        what="every delivery sent, each claimed once",
    )
    time.sleep(1)  # nothing more may arrive
    counts = recipients(server)
    assert set(counts) == {f"user{i}@example.org" for i in range(n)}
    assert sum(counts.values()) == n, f"{sum(counts.values()) - n} duplicates"
    shares = [sent_by(bot, port) for bot, port in bots]
    assert sum(shares) == n
    assert all(share > 0 for share in shares), shares  # both took part
    for bot, _ in bots:
        assert bot.stop() == 0, bot.log
