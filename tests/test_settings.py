"""The settings registry: defaults, validation, unknown names, env files and secret files."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.cli.common import cli
from campaignbot.errors import ConfigError
from campaignbot.settings import (
    iter_settings,
    known_variables,
    load_settings,
    markdown_table,
    public_url_warnings,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def shipped_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_CONFIG", str(REPO / "config" / "campaign.toml"))
    monkeypatch.setenv("CAMPAIGNBOT_TEMPLATES", str(REPO / "templates"))
    monkeypatch.setenv("CAMPAIGNBOT_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite")
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY", "test-secret-0123456789abcdef0123456789")


def test_public_url_follows_the_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_HTTP__PORT", "18282")
    assert load_settings().public_url == "http://127.0.0.1:18282"


def test_public_url_brackets_an_ipv6_bind_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_HTTP__HOST", "::1")
    assert load_settings().public_url == "http://[::1]:8080"


def test_an_explicit_public_url_wins_and_loses_its_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_HTTP__PORT", "18282")
    monkeypatch.setenv("CAMPAIGNBOT_PUBLIC_URL", "https://alerts.example.org/")
    assert load_settings().public_url == "https://alerts.example.org"


@pytest.mark.parametrize(
    "url",
    [
        "example.org",
        "ftp://example.org",
        "https://",
        "https://example.org/?a=1",
        "https://x.org/#f",
    ],
    ids=["no-scheme", "ftp", "no-host", "query", "fragment"],
)
def test_a_bad_public_url_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_PUBLIC_URL", url)
    with pytest.raises(ConfigError, match="CAMPAIGNBOT_PUBLIC_URL"):
        load_settings()


def test_an_unknown_variable_names_the_closest_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_SMTP_HOST", "mail.example.org")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "environment: CAMPAIGNBOT_SMTP_HOST: unknown setting; did you mean CAMPAIGNBOT_SMTP__HOST?"
    )


def test_an_unknown_variable_in_dotenv_is_an_error_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CAMPAIGNBOT_PUBLC_URL=https://x.org\n")
    with pytest.raises(ConfigError, match=r"\.env: CAMPAIGNBOT_PUBLC_URL: .*PUBLIC_URL"):
        load_settings()


def test_test_and_ci_variables_are_reserved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_TEST_ANYTHING", "1")
    monkeypatch.setenv("CAMPAIGNBOT_CI_VENV", "/tmp/x")
    load_settings()


def test_cli_rejects_an_unknown_variable_with_exit_2(
    shipped_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_SMTP_HOST", "mail.example.org")
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert "did you mean CAMPAIGNBOT_SMTP__HOST?" in result.output


def test_env_file_option_reads_the_operators_file(shipped_env: None, tmp_path: Path) -> None:
    env = tmp_path / "etc-env"
    env.write_text("CAMPAIGNBOT_PUBLIC_URL=https://alerts.example.org\n")
    result = CliRunner().invoke(cli, ["--env-file", str(env), "check"])
    assert result.exit_code == 0, result.output
    assert load_settings(env_file=env).public_url == "https://alerts.example.org"


def test_env_file_option_checks_unknown_names(shipped_env: None, tmp_path: Path) -> None:
    env = tmp_path / "etc-env"
    env.write_text("CAMPAIGNBOT_SMTP__HOTS=mail.example.org\n")
    result = CliRunner().invoke(cli, ["--env-file", str(env), "check"])
    assert result.exit_code == 2
    assert f"{env}: CAMPAIGNBOT_SMTP__HOTS: unknown setting" in result.output


def test_a_missing_env_file_is_a_usage_error(shipped_env: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--env-file", str(tmp_path / "nope"), "check"])
    assert result.exit_code == 2


def test_secrets_are_read_from_file_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    (tmp_path / "key").write_text("k" * 40 + "\n")
    monkeypatch.setenv("CAMPAIGNBOT_SMTP__HOST", "mail.example.org")
    monkeypatch.setenv("CAMPAIGNBOT_SMTP__PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY_FILE", str(tmp_path / "key"))
    settings = load_settings()
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "hunter2"
    assert settings.smtp.host == "mail.example.org"  # the group still reads the environment
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "k" * 40


def test_secrets_are_read_from_systemd_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secret_key").write_text("from-systemd-" + "x" * 30)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_settings()
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value().startswith("from-systemd-")


def test_a_secret_set_twice_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "key").write_text("x" * 40)
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY", "y" * 40)
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(ConfigError, match="set both CAMPAIGNBOT_SECRET_KEY and"):
        load_settings()


def test_an_unreadable_secret_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="CAMPAIGNBOT_SECRET_KEY_FILE: cannot read"):
        load_settings()


def test_admin_listener_defaults_to_loopback_8081(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.admin.host, settings.admin.port) == ("127.0.0.1", 8081)
    monkeypatch.setenv("CAMPAIGNBOT_ADMIN__PORT", "9091")
    assert load_settings().admin.port == 9091


def test_registry_lists_nested_settings_and_secret_file_variants() -> None:
    names = {s.variable for s in iter_settings()}
    assert {"CAMPAIGNBOT_SMTP__HOST", "CAMPAIGNBOT_ADMIN__PORT", "CAMPAIGNBOT_CONFIG"} <= names
    known = known_variables()
    assert "CAMPAIGNBOT_SMTP__PASSWORD_FILE" in known
    assert "CAMPAIGNBOT_SMTP" in known  # a whole group as JSON
    assert "CAMPAIGNBOT_SMTP__HOST_FILE" not in known  # only secrets have file variants


def test_registry_picks_up_fields_added_later() -> None:
    from pydantic import BaseModel, Field, SecretStr

    from campaignbot.settings import Settings

    class Extra(BaseModel):
        token: SecretStr | None = Field(None, description="a token")
        names: list[str] = Field(default_factory=list, description="some names")

    class Wider(Settings):
        extra: Extra = Extra()

    rows = {s.variable: s for s in iter_settings(Wider)}
    assert rows["CAMPAIGNBOT_EXTRA__TOKEN"].secret
    assert rows["CAMPAIGNBOT_EXTRA__NAMES"].type == "list"


def test_list_settings_take_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import BaseModel, Field

    from campaignbot.settings import Settings

    class Group(BaseModel):
        names: list[str] = Field(default_factory=list)

    class Wider(Settings):
        items: list[str] = Field(default_factory=list)
        group: Group = Group()

    monkeypatch.setenv("CAMPAIGNBOT_ITEMS", "a, b,c")
    monkeypatch.setenv("CAMPAIGNBOT_GROUP__NAMES", '["x", "y"]')
    wider = Wider()
    assert wider.items == ["a", "b", "c"]
    assert wider.group.names == ["x", "y"]
    monkeypatch.setenv("CAMPAIGNBOT_GROUP__NAMES", "p,q")
    assert Wider().group.names == ["p", "q"]


def test_check_warns_when_a_real_relay_gets_plain_http_loopback_links(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_SMTP__HOST", "smtp.example.org")
    warnings = public_url_warnings(load_settings())
    assert any("not https" in w for w in warnings)
    assert any("loopback" in w for w in warnings)
    monkeypatch.setenv("CAMPAIGNBOT_PUBLIC_URL", "https://alerts.example.org")
    assert public_url_warnings(load_settings()) == []


def test_readme_configuration_table_matches_the_registry() -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == markdown_table(), (
        "regenerate with: python -m campaignbot.settings"
    )


def test_a_secret_list_added_later_reads_its_file_one_item_per_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pydantic import Field, SecretStr

    from campaignbot.settings import Settings

    class Wider(Settings):
        old_keys: list[SecretStr] = Field(default_factory=list, description="rotation")

    [row] = [s for s in iter_settings(Wider) if s.variable == "CAMPAIGNBOT_OLD_KEYS"]
    assert row.secret and row.type == "secret list"
    (tmp_path / "keys").write_text("first-key\nsecond-key\n")
    monkeypatch.setenv("CAMPAIGNBOT_OLD_KEYS_FILE", str(tmp_path / "keys"))
    assert [k.get_secret_value() for k in Wider().old_keys] == ["first-key", "second-key"]
    monkeypatch.delenv("CAMPAIGNBOT_OLD_KEYS_FILE")
    monkeypatch.setenv("CAMPAIGNBOT_OLD_KEYS", "a,b")
    assert [k.get_secret_value() for k in Wider().old_keys] == ["a", "b"]


def test_registry_reads_help_from_sphinx_comments_too() -> None:
    from pydantic import BaseModel

    from campaignbot.settings import Settings

    class Group(BaseModel):
        #: how many, at most
        limit: int = 3
        plain: int = 1

    class Wider(Settings):
        group: Group = Group()

    rows = {s.variable: s for s in iter_settings(Wider)}
    assert rows["CAMPAIGNBOT_GROUP__LIMIT"].help == "how many, at most"
    assert rows["CAMPAIGNBOT_GROUP__PLAIN"].help == ""
    assert rows["CAMPAIGNBOT_VAR_DIR"].help  # a description still wins
