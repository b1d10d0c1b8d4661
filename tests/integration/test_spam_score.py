"""SpamAssassin scores every kind of email in every locale at most 1.0.

Debian's `spamassassin` with its bundled rules, local tests only (`-L`: no DNS or
network checks) and no Bayes, so the score depends on the message alone. All
messages go through one `spamassassin --mbox` run (one Perl start-up, about a
second). In CI (`CI` set) a missing spamassassin fails the test; locally it skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from campaignbot.campaign.model import Campaign, load_campaign
from campaignbot.email.render import CHANGES, Recipient, Renderer
from campaignbot.email.tokens import LinkSigner

REPO = Path(__file__).resolve().parents[2]
LOCALES = ("en", "fi", "pl", "et", "lv", "lt")
LIMIT = 1.0
_STATUS = re.compile(
    r"^X-Spam-Status: (?:Yes|No), score=(-?[\d.]+) required=[\d.]+ tests=(.*?)\s+autolearn=",
    re.MULTILINE | re.DOTALL,
)


def _spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("spamassassin is not installed (.ci/run installs Debian's spamassassin)")
        pytest.skip("spamassassin is not installed (apt-get install spamassassin)")
    return found


def _messages(campaign: Campaign) -> list[tuple[str, EmailMessage]]:
    """(label, message) for every kind x locale x change, as subscribers get them."""
    renderer = Renderer(
        REPO / "templates",
        campaign,
        signer=LinkSigner("spam-test-secret"),
        public_url="https://alerts.example.org",
    )
    timed = campaign.event("msp-22")  # an action, links, a summary, a venue time
    all_day = campaign.event("baltic-withdrawal-effective")  # a bare all-day event
    now = datetime(2026, 11, 30, 8, tzinfo=UTC)
    out: list[tuple[str, EmailMessage]] = []
    for locale in LOCALES:
        to = Recipient(7, "anna@example.com", "Anna Nowak", locale, "Europe/Helsinki")
        out.append((f"alert {locale}", renderer.render_alert(timed, "7d", to, now=now)))
        out.append((f"alert all-day {locale}", renderer.render_alert(all_day, "1d", to, now=now)))
        for change in CHANGES:
            notice = renderer.render_notice(
                timed, change, to, now=now, sequence=2, previous_when=timed.when
            )
            out.append((f"notice {change} {locale}", notice))
        out.append((f"confirm {locale}", renderer.render_confirm(to, now=now)))
    return out


def _mbox(messages: list[tuple[str, EmailMessage]]) -> bytes:
    chunks = []
    for _, message in messages:
        data = message.as_bytes().replace(b"\r\n", b"\n")
        data = re.sub(rb"^From ", b">From ", data, flags=re.MULTILINE)
        chunks.append(b"From campaignbot Thu Jan  1 00:00:00 2026\n" + data + b"\n")
    return b"".join(chunks)


def test_every_kind_and_locale_scores_at_most_one(tmp_path: Path) -> None:
    binary = _spamassassin()
    campaign = load_campaign(REPO / "config" / "campaign.toml")
    messages = _messages(campaign)
    prefs = tmp_path / "user_prefs"
    prefs.write_text("use_bayes 0\nbayes_auto_learn 0\n")
    result = subprocess.run(
        [binary, "-t", "-L", "--mbox", "-p", str(prefs)],
        input=_mbox(messages),
        capture_output=True,
        check=False,
        timeout=300,
        env={**os.environ, "HOME": str(tmp_path)},  # no ~/.spamassassin of the user's
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    found = _STATUS.findall(result.stdout.decode("utf-8", errors="replace"))
    assert len(found) == len(messages), result.stderr.decode(errors="replace")[-2000:]
    scores = {
        label: (float(score), " ".join(tests.split()))
        for (label, _), (score, tests) in zip(messages, found, strict=True)
    }
    over = {label: got for label, got in scores.items() if got[0] > LIMIT}
    assert not over, f"scored over {LIMIT}: {over}"
