"""`campaignbot admin add-user|add-token`: the users file they write and what it admits."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.cli.common import cli
from campaignbot.web.dashboard.accounts import load_accounts


@pytest.fixture
def users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "var" / "admin-users.toml"
    monkeypatch.setenv("CAMPAIGNBOT_ADMIN__USERS_FILE", str(path))
    return path


def test_add_user_stores_an_argon2_hash_readable_only_by_the_owner(users_file: Path) -> None:
    result = CliRunner().invoke(
        cli, ["admin", "add-user", "alice", "--password-stdin"], input="a long passphrase\n"
    )
    assert result.exit_code == 0, result.output
    assert f"added user alice in {users_file}" in result.output
    text = users_file.read_text()
    assert "a long passphrase" not in text
    assert "$argon2id$" in text
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    accounts = load_accounts(users_file)
    assert accounts.verify_password("alice", "a long passphrase")
    assert not accounts.verify_password("alice", "a long passphrasf")
    again = CliRunner().invoke(
        cli, ["admin", "add-user", "alice", "--password-stdin"], input="another passphrase\n"
    )
    assert "updated user alice" in again.output
    assert load_accounts(users_file).verify_password("alice", "another passphrase")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add-user", "alice", "--password-stdin"], "short\n", "at least 12 characters"),
        (["add-user", "bad name", "--password-stdin"], "a long passphrase\n", "user 'bad name'"),
        (["add-user", "alice"], "", "use --password-stdin"),
        (["add-token", "site", "--scope", "everything"], "", "'everything' is not one of"),
        (["add-token", "site"], "", "Missing option '--scope'"),
    ],
    ids=["short-password", "bad-name", "no-terminal", "unknown-scope", "no-scope"],
)
def test_bad_input_exits_2_and_writes_nothing(
    users_file: Path, args: list[str], stdin: str, message: str
) -> None:
    result = CliRunner().invoke(cli, ["admin", *args], input=stdin)
    assert result.exit_code == 2
    assert message in result.output
    assert not users_file.exists()


def test_add_token_prints_it_once_and_stores_a_hash(users_file: Path) -> None:
    result = CliRunner().invoke(
        cli, ["admin", "add-token", "website", "--scope", "subscribers:write"]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("cbt_")
    assert token not in users_file.read_text()
    stored = load_accounts(users_file).token_for(token)
    assert stored is not None and stored.name == "website"
    assert stored.allows("subscribers:read") and stored.allows("subscribers:write")
    assert not stored.allows("subscribers:consent") and not stored.allows("alerts:read")
    assert (
        load_accounts(users_file).token_for(token[:-1] + ("y" if token.endswith("x") else "x"))
        is None
    )
