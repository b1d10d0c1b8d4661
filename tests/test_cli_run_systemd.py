"""`campaignbot run` under systemd `Type=notify`: READY, watchdog pings, STOPPING."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.processes import RunningBot, free_port

pytestmark = pytest.mark.slow


def test_run_notifies_systemd_and_feeds_the_watchdog(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(0.2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
        env |= {
            "CAMPAIGNBOT_CONFIG": str(REPO / "config" / "campaign.toml"),
            "CAMPAIGNBOT_TEMPLATES": str(REPO / "templates"),
            "CAMPAIGNBOT_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite",
            "CAMPAIGNBOT_SECRET_KEY": "test-secret-0123456789abcdef0123456789",
            "CAMPAIGNBOT_MAILDIR": str(tmp_path / "outbox"),
            "CAMPAIGNBOT_HTTP__PORT": str(free_port()),
            "CAMPAIGNBOT_ADMIN__PORT": str(free_port()),
            "NOTIFY_SOCKET": address,
            "WATCHDOG_USEC": "400000",  # a ping every 0.2 s
        }
        bot = RunningBot(env, tmp_path)
        received: list[str] = []

        def collect(until: str, timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and until not in received:
                try:
                    received.append(listener.recv(256).decode())
                except TimeoutError:
                    continue

        try:
            collect("READY=1", 30)
            assert "READY=1" in received, bot.log
            start = len(received)
            time.sleep(1.0)
            collect("__never__", 0.5)
            pings = received[start:].count("WATCHDOG=1")
            assert pings >= 3, received
        finally:
            code = bot.stop(signal.SIGTERM)
        collect("STOPPING=1", 5)
        assert code == 0, bot.log
        assert "STOPPING=1" in received
