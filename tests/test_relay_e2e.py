"""`campaignbot run` with the relay down: the log says so at once, once, and no
delivery's attempts are used up. Real process, real clock (seconds)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaignbot.storage.database import open_database
from campaignbot.storage.tables import deliveries
from tests.campaign_files import event_toml, write_campaign
from tests.processes import RunningBot, free_port, warm_up
from tests.test_service_e2e import add_subscribers, soon

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def attempts(url: str) -> list[tuple[str, int]]:
    async def read() -> list[tuple[str, int]]:
        db = open_database(url)
        try:
            async with db.engine.connect() as conn:
                rows = await conn.execute(select(deliveries.c.status, deliveries.c.attempts))
                return [(r.status, r.attempts) for r in rows]
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_a_relay_refusing_the_login_is_logged_once_and_uses_no_attempts(
    tmp_path: Path, smtp_server_thread: Callable[..., Any]
) -> None:
    warm_up()
    server = smtp_server_thread(auth=("alerts@example.org", "right"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env |= server.env() | {
        "CAMPAIGNBOT_SMTP__PASSWORD": "wrong",
        "CAMPAIGNBOT_CONFIG": str(tmp_path / "campaign.toml"),
        "CAMPAIGNBOT_TEMPLATES": str(REPO / "templates"),
        "CAMPAIGNBOT_DATABASE_URL": f"sqlite:///{tmp_path}/campaignbot.db",
        "CAMPAIGNBOT_SECRET_KEY": "relay-e2e-secret-" * 3,  # 51 bytes
        "CAMPAIGNBOT_HTTP__PORT": str(free_port()),
    }
    write_campaign(tmp_path / "campaign.toml", event_toml("fi-vote", soon(3), reminders=["0"]))
    people = [(f"p{i}@example.fi", "fi", "FI") for i in range(5)]
    add_subscribers(env["CAMPAIGNBOT_DATABASE_URL"], people)
    bot = RunningBot(env, tmp_path)
    try:
        bot.wait_for_log("started")
        started = time.monotonic()
        bot.wait_for_log("SMTP relay is down", timeout_s=15)
        assert time.monotonic() - started < 10
        time.sleep(2)  # more tries would log again; the pause means there are none
        assert bot.stop() == 0, bot.log
    finally:
        bot.close()

    lines = [line for line in bot.log.splitlines() if "WARNING" in line]
    assert len(lines) == 1, bot.log
    assert "AUTH failed: 535" in lines[0] and "wrong" not in lines[0]
    assert attempts(env["CAMPAIGNBOT_DATABASE_URL"]) == [("pending", 0)] * 5
    assert server.messages == []
