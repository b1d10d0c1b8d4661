"""SIGKILL `campaignbot run` at a fraction of a large send, restart it, count what arrived twice.

Shared by tests/test_guarantees_e2e.py (one run per database) and
benchmarks/kill_runs.py (ten runs in a row, printing the duplicates of each).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from campaignbot.storage.database import open_database
from campaignbot.storage.tables import subscribers
from tests.campaign_files import event_toml, write_campaign
from tests.processes import RunningBot, free_port

REPO = Path(__file__).resolve().parent.parent
LEASE_S = 2.0


@dataclass(frozen=True)
class KillRun:
    """What one run saw."""

    subscribers: int
    received_at_kill: int
    duplicates: int
    lost: int
    max_concurrent: int


async def _prepare(url: str, n: int) -> None:
    db = open_database(url)
    try:
        await db.upgrade()
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = [
            {
                "email": f"user{i}@example.org",
                "email_key": f"user{i}@example.org",
                "name": f"User {i}",
                "locale": "en",
                "timezone": "Europe/Helsinki",
                "countries": ";FI;",
                "topics": "",
                "follows_all": False,
                "status": "active",
                "hard_bounces": 0,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(n)
        ]
        async with db.engine.begin() as conn:
            await conn.execute(insert(subscribers), rows)
    finally:
        await db.dispose()


def bot_env(server: Any, url: str, folder: Path, *, max_connections: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env.update(server.env())
    env.update(
        CAMPAIGNBOT_CONFIG=str(folder / "campaign.toml"),
        CAMPAIGNBOT_TEMPLATES=str(REPO / "templates"),
        CAMPAIGNBOT_DATABASE_URL=url,
        CAMPAIGNBOT_SECRET_KEY="e2e-secret-0123456789abcdef0123456789",
        CAMPAIGNBOT_HTTP__PORT=str(free_port()),
        CAMPAIGNBOT_ADMIN__PORT=str(free_port()),
        CAMPAIGNBOT_LEASE_S=str(LEASE_S),
        CAMPAIGNBOT_SMTP__MAX_CONNECTIONS=str(max_connections),
    )
    return env


def kill_run(
    server: Any,
    url: str,
    folder: Path,
    *,
    n: int = 3000,
    kill_at: float = 0.4,
    max_connections: int = 4,
    delay_s: float = 0.01,
) -> KillRun:
    """One run on an empty database `url`; `server` is a ThreadedSMTPServer."""
    asyncio.run(_prepare(url, n))
    # due in 3 s: a reminder two days before an event, so no stale guard is involved
    when = datetime.now(UTC) + timedelta(days=2, seconds=3)
    write_campaign(folder / "campaign.toml", event_toml("vote", when, reminders=["2d"]))
    env = bot_env(server, url, folder, max_connections=max_connections)
    server.fail("DATA", delay_s=delay_s)  # a slow relay: many messages in flight
    first = RunningBot(env, folder)
    try:
        first.wait_for_log("started")
        server.wait_for_messages(int(n * kill_at), timeout_s=120)
    finally:
        first.stop(signal.SIGKILL)
    at_kill = len(server.messages)
    time.sleep(LEASE_S + 0.5)  # the dead process's leases expire
    second = RunningBot(env, folder)
    try:
        second.wait_for_log("started")
        deadline = time.monotonic() + 180
        while len({r for m in server.messages for r in m.rcpt_tos}) < n:
            assert time.monotonic() < deadline, f"{len(server.messages)} of {n}:\n{second.log}"
            assert second.proc.poll() is None, second.log
            time.sleep(0.05)
        second.wait_for_log("vote:2d: completed", timeout_s=30)
        time.sleep(0.5)  # anything sent twice late would show now
    finally:
        second.stop()
    server.faults.clear()
    counts = Counter(r for m in server.messages for r in m.rcpt_tos)
    return KillRun(
        subscribers=n,
        received_at_kill=at_kill,
        duplicates=sum(c - 1 for c in counts.values()),
        lost=n - len(counts),
        max_concurrent=server.max_concurrent,
    )
