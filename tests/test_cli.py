"""`check` and `plan` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.cli.common import cli

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "config" / "campaign.toml"


@pytest.fixture
def shipped_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_CONFIG", str(SHIPPED))
    monkeypatch.setenv("CAMPAIGNBOT_TEMPLATES", str(REPO / "templates"))
    monkeypatch.setenv("CAMPAIGNBOT_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite")
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY", "test-secret-0123456789abcdef0123456789")


def test_check_passes_on_the_shipped_config(shipped_env: None) -> None:
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_check_lists_every_problem_on_one_line_each(shipped_env: None, tmp_path: Path) -> None:
    broken = tmp_path / "campaign.toml"
    text = SHIPPED.read_text()
    text = text.replace(
        'timezone = "Europe/Helsinki"\nsummary', 'timezone = "Europe/Helsenki"\nsummary', 1
    )
    text = text.replace('id = "pl-deposit"', 'id = "fi-deposit"')
    broken.write_text(text)
    result = CliRunner().invoke(cli, ["--config", str(broken), "check"])
    assert result.exit_code == 2
    assert f"{broken}: events[1].when: unknown time zone 'Europe/Helsenki'" in result.output
    assert f"{broken}: events[5].id: duplicate event id 'fi-deposit'" in result.output
    assert "Traceback" not in result.output


def test_check_reports_malformed_toml_with_its_line(shipped_env: None, tmp_path: Path) -> None:
    broken = tmp_path / "campaign.toml"
    broken.write_text("[campaign]\nname = \n")
    result = CliRunner().invoke(cli, ["--config", str(broken), "check"])
    assert result.exit_code == 2
    assert f"{broken}: line 2: invalid TOML" in result.output


def test_bad_setting_names_the_variable(shipped_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_SMTP__PORT", "seventy")
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert "CAMPAIGNBOT_SMTP__PORT" in result.output


def test_plan_json_is_in_due_order_with_local_times(shipped_env: None) -> None:
    result = CliRunner().invoke(
        cli, ["plan", "--from", "2025-06-14T00:00Z", "--until", "2025-06-21", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["event"], r["reminder"]) for r in rows] == [
        ("fi-final-vote", "3d"),
        ("fi-final-vote", "1d"),
        ("fi-final-vote", "2h"),
        ("fi-final-vote", "0"),
        ("pl-sejm-vote", "1d"),
        ("pl-sejm-vote", "0"),
        ("baltic-deposit", "7d"),  # all-day, 09:00 in New York
    ]
    assert rows[-1]["due_local"] == "2025-06-20T09:00:00-04:00"
    final = rows[3]
    assert final["due_utc"] == "2025-06-19T07:00:00+00:00"
    assert final["due_local"] == "2025-06-19T10:00:00+03:00"
    assert all(set(r) == {"event", "reminder", "due_utc", "due_local", "audience"} for r in rows)
    dues = [datetime.fromisoformat(r["due_utc"]) for r in rows]
    assert dues == sorted(dues)


def test_plan_table_shows_utc_and_local_time(shipped_env: None) -> None:
    result = CliRunner().invoke(cli, ["plan", "--from", "2025-06-19", "--until", "2025-06-20"])
    assert result.exit_code == 0, result.output
    assert "2025-06-19 07:00" in result.output
    assert "2025-06-19 10:00 EEST" in result.output


def test_plan_rejects_a_bad_time(shipped_env: None) -> None:
    result = CliRunner().invoke(cli, ["plan", "--from", "next tuesday"])
    assert result.exit_code == 2
    assert "--from" in result.output


def test_console_script_runs_without_traceback(shipped_env: None, tmp_path: Path) -> None:
    broken = tmp_path / "c.toml"
    broken.write_text("[campaign]\n")
    proc = subprocess.run(  # noqa: PLW1510  (the return code is the point of the test)
        [sys.executable, "-m", "campaignbot", "--config", str(broken), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{broken}: campaign.name: missing" in proc.stderr


def test_check_reports_a_broken_web_page_template(shipped_env: None, tmp_path: Path) -> None:
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    page = templates / "web" / "home.html.j2"
    page.write_text("{% block content %}\n{% if %}\n")
    result = CliRunner().invoke(cli, ["check"], env={"CAMPAIGNBOT_TEMPLATES": str(templates)})
    assert result.exit_code == 2
    assert f"{page}:2: " in result.output


def test_check_reports_an_unreachable_database(shipped_env: None) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(cli, ["check"], env={"CAMPAIGNBOT_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "database: postgresql+asyncpg://postgres@127.0.0.1:1/nowhere: " in (result.output)


def test_check_smtp_logs_in_sends_nothing_and_names_what_it_tested(
    shipped_env: None, smtp_server_thread: Callable[..., Any]
) -> None:
    server = smtp_server_thread(auth=("alerts@example.org", "s3cret"))
    env = {
        **server.env(),
        "CAMPAIGNBOT_SMTP__TLS": "none",
        "CAMPAIGNBOT_SMTP__LOCAL_HOSTNAME": "mail.example.org",
    }
    result = CliRunner().invoke(cli, ["check", "--smtp"], env=env)
    assert result.exit_code == 0, result.output
    tested = f"smtp://127.0.0.1:{server.port} no TLS, AUTH PLAIN as alerts@example.org: OK"
    assert f"OK transport {tested}" in result.output
    assert server.connections == 1 and server.messages == []


def test_check_smtp_reports_a_server_that_is_down_as_an_operational_failure(
    shipped_env: None, smtp_server_thread: Callable[..., Any]
) -> None:
    server = smtp_server_thread(start=False)  # the port refuses connections
    result = CliRunner().invoke(cli, ["check", "--smtp"], env=server.env())
    assert result.exit_code == 1
    line = (
        f"transport smtp://127.0.0.1:{server.port} no TLS, no AUTH: "
        f"127.0.0.1:{server.port}: cannot connect: "
    )
    assert line in result.output, result.output
    assert "Traceback" not in result.output


def test_debug_works_after_the_command_too(shipped_env: None, tmp_path: Path) -> None:
    broken = tmp_path / "c.toml"
    broken.write_text("[campaign]\n")
    proc = subprocess.run(  # noqa: PLW1510  (the return code is the point of the test)
        [sys.executable, "-m", "campaignbot", "--config", str(broken), "check", "--debug"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "No such option" not in proc.stderr
    assert proc.returncode == 2


def test_check_smtp_warns_about_an_ehlo_name_that_is_not_fully_qualified(
    shipped_env: None, smtp_server_thread: Callable[..., Any]
) -> None:
    server = smtp_server_thread()
    env = {**server.env(), "CAMPAIGNBOT_SMTP__LOCAL_HOSTNAME": "laptop"}
    result = CliRunner().invoke(cli, ["check", "--smtp"], env=env)
    assert result.exit_code == 0, result.output
    assert "EHLO name 'laptop' is not fully qualified" in result.output
    assert "CAMPAIGNBOT_SMTP__LOCAL_HOSTNAME" in result.output
    assert server.ehlo_names == ["laptop"]


def test_check_smtp_names_the_maildir_without_a_relay(shipped_env: None) -> None:
    result = CliRunner().invoke(cli, ["check", "--smtp"])
    assert result.exit_code == 0, result.output
    assert "OK transport maildir var/outbox: OK" in result.output
