"""`campaignbot run` start-up failures: one clear line, the right exit code, nothing sent."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.processes import free_port

REPO = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    base.update(
        CAMPAIGNBOT_CONFIG=str(REPO / "config" / "campaign.toml"),
        CAMPAIGNBOT_TEMPLATES=str(REPO / "templates"),
        CAMPAIGNBOT_DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite",
        CAMPAIGNBOT_SECRET_KEY="test-secret-0123456789abcdef0123456789",
        CAMPAIGNBOT_MAILDIR=str(tmp_path / "outbox"),
        CAMPAIGNBOT_HTTP__PORT=str(free_port()),
        CAMPAIGNBOT_ADMIN__PORT=str(free_port()),
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "campaignbot", "run"],
        env=base,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_taken_web_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _run(tmp_path, CAMPAIGNBOT_HTTP__PORT=str(port))
    assert proc.returncode == 1
    assert f"error: 127.0.0.1:{port}: cannot listen: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outbox").exists()  # nothing was fired or written


def test_an_invalid_campaign_file_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "campaign.toml"
    broken.write_text("[campaign]\nname = 'x'\n")
    proc = _run(tmp_path, CAMPAIGNBOT_CONFIG=str(broken))
    assert proc.returncode == 2
    assert f"{broken}: campaign.sender: missing" in proc.stderr
    assert "Traceback" not in proc.stderr
