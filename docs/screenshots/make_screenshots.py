"""Screenshots of the alert email in every language, desktop and phone width.

Run from the repository root: `python docs/screenshots/make_screenshots.py`.
Needs headless Chromium (Debian's `chromium`); writes docs/screenshots/*.png.
"""

from __future__ import annotations

import subprocess
import tempfile
from datetime import UTC, datetime
from email.message import MIMEPart
from pathlib import Path

from campaignbot.campaign.model import LOCALES, load_campaign
from campaignbot.email.render import Recipient, Renderer
from campaignbot.email.tokens import LinkSigner

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "screenshots"
ZONES = {
    "en": "Europe/London",
    "fi": "Europe/Helsinki",
    "pl": "Europe/Warsaw",
    "et": "Europe/Tallinn",
    "lv": "Europe/Riga",
    "lt": "Europe/Vilnius",
}
NAMES = {"en": "Anna", "fi": "Matti", "pl": "Anna", "et": "Mari", "lv": "Anna", "lt": "Ona"}
WIDTHS = {"desktop": (680, 880), "phone": (375, 1120)}


def main() -> None:
    campaign = load_campaign(REPO / "config" / "campaign.toml")
    renderer = Renderer(
        REPO / "templates",
        campaign,
        signer=LinkSigner("screenshots"),
        public_url="https://alerts.example.org",
    )
    event = campaign.event("msp-22")
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)  # the "7d" reminder
    with tempfile.TemporaryDirectory() as tmp:
        for locale in LOCALES:
            to = Recipient(1, "reader@example.org", NAMES[locale], locale, ZONES[locale])
            message = renderer.render_alert(event, "7d", to, now=now)
            body = message.get_body(("html",))
            assert isinstance(body, MIMEPart)
            page = Path(tmp) / f"alert-{locale}.html"
            page.write_text(str(body.get_content()), encoding="utf-8")
            for name, (width, height) in WIDTHS.items():
                target = OUT / f"alert-{locale}-{name}.png"
                subprocess.run(
                    [
                        "/usr/bin/chromium",
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--hide-scrollbars",
                        f"--window-size={width},{height}",
                        f"--screenshot={target}",
                        page.as_uri(),
                    ],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                print(target.relative_to(REPO))


if __name__ == "__main__":
    main()
