"""`campaignbot preview`: one rendered alert on stdout; bad input exits 2."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from campaignbot.cli.common import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_CONFIG", str(REPO / "config" / "campaign.toml"))
    monkeypatch.setenv("CAMPAIGNBOT_TEMPLATES", str(REPO / "templates"))
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY", "preview-test-key-0123456789abcdef0123")
    monkeypatch.setenv("CAMPAIGNBOT_PUBLIC_URL", "https://alerts.example.org")


def run(*args: str) -> Result:
    import campaignbot.cli  # noqa: F401  # registers the commands on `cli`

    return CliRunner().invoke(cli, ["preview", *args])


def test_text_shows_headers_then_the_plain_body() -> None:
    result = run("fi-final-vote")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Subject: In 3 days — Finland: final vote on leaving the Mine Ban Treaty"
    assert lines[1] == "From: Mine Ban Alerts <alerts@example.org>"
    assert lines[2] == "To: Sample Subscriber <subscriber@example.org>"
    assert lines[3] == ""
    assert "Hi Sample Subscriber," in result.stdout
    assert "(Eastern European Summer Time)" in result.stdout  # the campaign's zone
    assert "https://alerts.example.org/unsubscribe?t=" in result.stdout


def test_reminder_and_locale_can_be_chosen() -> None:
    result = run("fi-final-vote", "--reminder", "1d", "--locale", "pl")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Subject: Jutro – Finlandia: ostateczne")


def test_html_prints_the_html_part() -> None:
    result = run("msp-22", "--locale", "fi", "--format", "html")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert '<html lang="fi">' in result.stdout
    assert "Allekirjoita avoin kirje" in result.stdout


def test_eml_prints_the_whole_message() -> None:
    result = run("msp-22", "--format", "eml")
    assert result.exit_code == 0, result.output
    msg = email.message_from_bytes(result.stdout_bytes, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_filename() for p in msg.iter_attachments()] == ["msp-22.ics"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fi-vote"], "error: unknown event 'fi-vote' (known: lt-ccm-withdrawal-effective, "),
        (
            ["fi-final-vote", "--reminder", "5d"],
            "error: unknown reminder '5d' for event 'fi-final-vote' (known: 3d, 1d, 2h, 0)",
        ),
        (
            ["fi-final-vote", "--locale", "de"],
            "error: unknown locale 'de' (known: en, et, fi, lt, lv, pl)",
        ),
    ],
)
def test_unknown_event_reminder_or_locale_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(message)


def test_a_broken_template_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    (templates / "alert" / "en.subject.j2").write_text("{{ evnt.title }}\n")
    monkeypatch.setenv("CAMPAIGNBOT_TEMPLATES", str(templates))
    result = run("msp-22")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {templates / 'alert' / 'en.subject.j2'}:1: 'evnt' is undefined"
    )


def test_a_change_notice_can_be_previewed() -> None:
    result = run("fi-final-vote", "--kind", "notice", "--change", "cancelled", "--locale", "fi")
    assert result.exit_code == 0, result.output
    subject = result.stdout.splitlines()[0]
    assert subject.startswith("Subject: ") and "Peruttu" in subject, subject


def test_the_confirmation_email_needs_no_event() -> None:
    result = run("--kind", "confirm", "--format", "html")
    assert result.exit_code == 0, result.output
    assert "https://alerts.example.org/confirm?t=" in result.stdout


def test_an_alert_preview_without_an_event_is_one_line_and_exit_2() -> None:
    result = run("--kind", "alert")
    assert result.exit_code == 2
    assert "needs an EVENT" in result.output and "Traceback" not in result.output
