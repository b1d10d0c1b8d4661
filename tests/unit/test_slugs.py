"""Slugs and URLs in the campaign file are matched whole (issue 14, L6): `$` also
matches before a final newline, which would carry a bare LF into a mail header."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaignbot.campaign.model import load_campaign
from campaignbot.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "campaign.toml"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('id = "fi-final-vote"', 'id = "fi-final-vote\\n"'),
        (
            'topics = ["mine-ban-treaty", "cluster-munitions", "elections"]',
            'topics = ["mine-ban-treaty\\n", "cluster-munitions", "elections"]',
        ),
        (
            'links = ["https://www.eduskunta.fi/"]',
            'links = ["https://www.eduskunta.fi/\\n"]',
        ),
    ],
    ids=["event-id", "topic", "link"],
)
def test_a_trailing_newline_is_refused(tmp_path: Path, old: str, new: str) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "campaign.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError):
        load_campaign(path)
