"""SMTPSettings: the relay options, and the one-line errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaignbot.delivery.smtp_session import planned
from campaignbot.errors import ConfigError
from campaignbot.settings import SMTPAuth, load_settings


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for name, value in env.items():
        monkeypatch.setenv(f"CAMPAIGNBOT_SMTP__{name.upper()}", value)
    return load_settings()


def test_the_relay_options_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from(
        monkeypatch,
        host="smtp.office365.com",
        username="alerts@example.org",
        auth="xoauth2",
        oauth_token_command="oauth2ms --token",
        local_hostname="mail.example.org",
        ca_file=str(tmp_path / "ca.pem"),
    )
    smtp = settings.smtp  # type: ignore[attr-defined]
    assert smtp.auth is SMTPAuth.XOAUTH2 and smtp.oauth_token_command == "oauth2ms --token"
    assert smtp.local_hostname == "mail.example.org" and smtp.ca_file == tmp_path / "ca.pem"
    assert smtp.allow_plaintext_auth is False
    assert (
        planned(smtp)
        == "smtp://smtp.office365.com:587 STARTTLS, AUTH XOAUTH2 as alerts@example.org"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"auth": "xoauth2", "username": "a"}, "exactly one of CAMPAIGNBOT_SMTP__OAUTH_TOKEN_FILE"),
        ({"auth": "xoauth2", "oauth_token_file": "/t"}, "needs CAMPAIGNBOT_SMTP__USERNAME"),
        ({"oauth_token_command": "x"}, "only used with CAMPAIGNBOT_SMTP__AUTH=xoauth2"),
        ({"client_key": "/k.pem"}, "CLIENT_KEY needs CAMPAIGNBOT_SMTP__CLIENT_CERT"),
        ({"auth": "ntlm"}, "CAMPAIGNBOT_SMTP__AUTH"),
        ({"local_hostname": "bad name\r\nRCPT"}, "CAMPAIGNBOT_SMTP__LOCAL_HOSTNAME"),
    ],
)
def test_inconsistent_relay_options_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(monkeypatch, **env)
