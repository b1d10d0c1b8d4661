"""The link-signing key: its file, its strength, rotation; list settings (issue 14)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from campaignbot.errors import ConfigError
from campaignbot.settings import Settings, secret_key, secret_key_fallbacks


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(var_dir=tmp_path / "var", **values)  # type: ignore[arg-type]


def test_the_key_file_is_created_0600_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file must never exist with a wider mode")

    monkeypatch.setattr(Path, "chmod", no_chmod)
    monkeypatch.setattr(os, "chmod", no_chmod)
    old_umask = os.umask(0o022)
    try:
        key = secret_key(_settings(tmp_path))
    finally:
        os.umask(old_umask)
    path = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().strip() == key
    assert len(key.encode()) >= 32
    assert secret_key(_settings(tmp_path)) == key  # read back, not regenerated
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temp file left


@pytest.mark.parametrize(
    ("mode", "content", "message"),
    [
        (0o644, "k" * 43, "readable by others"),
        (0o640, "k" * 43, "readable by others"),
        (0o600, "", "empty"),
        (0o600, "short", "too short"),
    ],
    ids=["world-readable", "group-readable", "empty", "short"],
)
def test_a_bad_key_file_is_refused(tmp_path: Path, mode: int, content: str, message: str) -> None:
    path = tmp_path / "var" / "secret.key"
    path.parent.mkdir()
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=message):
        secret_key(_settings(tmp_path))
    assert path.read_text() == content  # nothing changed


def test_a_short_key_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CAMPAIGNBOT_SECRET_KEY: .*too short"):
        secret_key(_settings(tmp_path, secret_key="a"))
    assert secret_key(_settings(tmp_path, secret_key="x" * 32)) == "x" * 32


@pytest.mark.parametrize(
    "value",
    [
        "old-key-one-0123456789abcdef01234, old-key-two-0123456789abcdef0123",
        '["old-key-one-0123456789abcdef01234", "old-key-two-0123456789abcdef0123"]',
    ],
    ids=["comma", "json"],
)
def test_list_settings_take_commas_or_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CAMPAIGNBOT_SECRET_KEY_FALLBACKS", value)
    monkeypatch.setenv(
        "CAMPAIGNBOT_HTTP__TRUSTED_PROXIES",
        value.replace("old-key-one-0123456789abcdef01234", "10.0.0.1").replace(
            "old-key-two-0123456789abcdef0123", "::1"
        ),
    )
    settings = _settings(tmp_path)
    assert secret_key_fallbacks(settings) == [
        "old-key-one-0123456789abcdef01234",
        "old-key-two-0123456789abcdef0123",
    ]
    assert settings.http.trusted_proxies == ["10.0.0.1", "::1"]


def test_trusted_proxies_are_empty_by_default(tmp_path: Path) -> None:
    assert _settings(tmp_path).http.trusted_proxies == []
