"""kill -9 in the middle of `campaignbot send`, restart: nothing lost, few duplicates.

The real CLI runs in a subprocess against a thread-run aiosmtpd server and a SQLite file,
with a 2 s lease. It is killed once the server has some but not all messages; after the
lease expires a second run takes over the dead process's claims and finishes the work.
Duplicates may only be messages in flight (accepted, outcome not yet committed): at
most one per connection.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from campaignbot.storage.database import open_database
from tests.campaign_files import event_toml, write_campaign
from tests.conftest import REPO
from tests.fixtures.smtp import ThreadedSMTPServer
from tests.integration.test_ledger import insert_subscribers

SUBSCRIBERS = 2000
LEASE_S = 2.0


async def _prepare(url: str) -> None:
    db = open_database(url)
    try:
        await db.upgrade()
        await insert_subscribers(db, SUBSCRIBERS)
    finally:
        await db.dispose()


def test_kill_9_mid_batch_loses_nothing_and_duplicates_at_most_in_flight(
    tmp_path: Path, smtp_server_thread: Callable[..., ThreadedSMTPServer]
) -> None:
    server = smtp_server_thread()
    when = datetime.now(UTC) + timedelta(days=20)
    config = write_campaign(tmp_path / "campaign.toml", event_toml("vote", when))
    url = f"sqlite:///{tmp_path / 'campaignbot.db'}"
    asyncio.run(_prepare(url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env |= {
        "CAMPAIGNBOT_CONFIG": str(config),
        "CAMPAIGNBOT_TEMPLATES": str(REPO / "templates"),
        "CAMPAIGNBOT_DATABASE_URL": url,
        "CAMPAIGNBOT_SECRET_KEY": "test-secret-0123456789abcdef0123456789",
        "CAMPAIGNBOT_LEASE_S": str(LEASE_S),
        "CAMPAIGNBOT_SMTP__MAX_CONNECTIONS": "4",
        **server.env(),
    }
    command = [sys.executable, "-m", "campaignbot", "send", "vote", "-r", "0", "--yes"]

    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 60
            while len(server.messages) < 400:
                assert first.poll() is None, log.read_text()
                assert time.monotonic() < deadline, (
                    f"{len(server.messages)} sent: {log.read_text()}"
                )
                time.sleep(0.005)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
    killed_at = len(server.messages)
    assert killed_at < SUBSCRIBERS, "killed too late to test anything"

    time.sleep(LEASE_S + 0.5)  # the dead process's lease expires
    server.server.max_concurrent = 0  # count the second process's connections alone
    second = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, timeout=60, check=False
    )
    output = (second.stdout + second.stderr).decode()
    assert second.returncode == 0, output
    assert "fired before" in output

    # MAX_CONNECTIONS caps every connection the process opens, its check included
    assert server.max_concurrent <= 4, server.max_concurrent
    received = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert len(received) == SUBSCRIBERS  # nobody lost
    duplicates = sum(received.values()) - SUBSCRIBERS
    # at most one unrecorded message per connection (CAMPAIGNBOT_SMTP__MAX_CONNECTIONS=4)
    assert duplicates <= 4, f"{duplicates} duplicates (killed at {killed_at})"
    print(f"killed after {killed_at} messages; {duplicates} duplicates")
