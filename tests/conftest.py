"""Test-wide setup: strip operator settings, register fixture plugins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI machines are shared and slow at times: judge properties, not speed. Locally
# every run explores new examples; CI (.ci/run sets CI) replays a fixed set, so a
# red build means a change broke something, and exploring is left to development.
settings.register_profile("campaignbot", deadline=None, print_blob=True)
settings.register_profile("campaignbot-ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("campaignbot-ci" if os.environ.get("CI") else "campaignbot")

# Fixture families live in their own modules so each stays small.
pytest_plugins = [
    "tests.fixtures.smtp",
    "tests.fixtures.scripted",
    "tests.fixtures.postfix",
    "tests.fixtures.db",
    "tests.fixtures.mailservers",
]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No stray CAMPAIGNBOT_* variable or .env leaks into a test (procrastinate does the same)."""
    for name in list(os.environ):
        if name.startswith("CAMPAIGNBOT_") and name != "CAMPAIGNBOT_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
