"""`campaignbot bounces`, `subscribers list --status complained` and bad bounce settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.cli.common import cli
from tests.bounce_samples import dsn, sample
from tests.conftest import REPO
from tests.integration.test_bounces import deliver


@pytest.fixture
def maildir(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Path:
    monkeypatch.setenv("CAMPAIGNBOT_CONFIG", str(REPO / "config" / "campaign.toml"))
    monkeypatch.setenv("CAMPAIGNBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("CAMPAIGNBOT_BOUNCE_ADDRESS", "bounces@example.org")
    monkeypatch.setenv("CAMPAIGNBOT_BOUNCES__MAILDIR", str(tmp_path / "bounces"))
    return tmp_path / "bounces"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_bounces_reads_the_mailbox_and_lists_reports(maildir: Path) -> None:
    assert run("subscribers", "add", "complainer@example.net", "--locale", "en").exit_code == 0
    deliver(maildir, sample("arf-abuse.eml", **{"bounces+TAG": "bounces", "MSGID": "<x@y>"}))
    deliver(
        maildir,
        dsn("bounces@example.org", [("nobody@example.net", "failed", "5.1.1", "smtp; 550 no")]),
    )
    deliver(maildir, sample("vacation.eml"))
    result = run("bounces", "--read")
    assert result.exit_code == 0, result.output
    assert (
        "Read 3 messages from the bounce mailbox: 1 ignored, 1 unmatched, 1 unsubscribed."
        in result.output
    )
    assert "complainer@example.net" in result.output
    rows = json.loads(run("bounces", "--json").output)
    assert [(r["kind"], r["email"], r["status"], r["action"]) for r in rows] == [
        ("hard", "nobody@example.net", "5.1.1", "unmatched"),
        ("complaint", "complainer@example.net", None, "unsubscribed"),
    ]
    assert len(json.loads(run("bounces", "--json", "--all").output)) == 3
    listed = json.loads(run("subscribers", "list", "--status", "complained", "--json").output)
    assert [s["email"] for s in listed] == ["complainer@example.net"]
    # reading again adds nothing
    assert "Read 0 messages" in run("bounces", "--read").output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CAMPAIGNBOT_BOUNCES__HARD_LIMIT", "0"),
        ("CAMPAIGNBOT_BOUNCE_ADDRESS", "not an address"),
        ("CAMPAIGNBOT_BOUNCES__IMAP_URL", "imap://user:pw@imap.example.org"),
    ],
)
def test_bad_bounce_settings_are_one_line_and_exit_2(
    maildir: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = run("bounces", "--read")
    assert result.exit_code == 2, result.output
    assert variable in result.output
