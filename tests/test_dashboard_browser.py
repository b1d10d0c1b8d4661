"""A real browser (Chromium through Playwright) against a real `campaignbot run` process:
log in to the dashboard, open the timeline and an alert, suppress an address, and check
every dashboard page with axe-core for WCAG 2.1 AA violations."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaignbot.campaign.model import load_campaign
from campaignbot.campaign.planning import alerts_for_event
from campaignbot.delivery.ledger import Failed, Ledger, Sent
from campaignbot.storage.database import open_database
from campaignbot.subscribers.model import SubscriberInput
from campaignbot.subscribers.store import SubscriberStore, audience_clause
from campaignbot.web.dashboard.accounts import add_user
from tests.fixtures.smtp import ThreadedSMTPServer
from tests.processes import free_port, served

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
#: installed by .ci/run (`npm ci --prefix .ci/axe`); another copy may be named instead
AXE_JS = Path(
    os.environ.get("CAMPAIGNBOT_TEST_AXE_JS", REPO / ".ci/axe/node_modules/axe-core/axe.min.js")
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: also save the screenshots here (README's docs/); read at import, before conftest strips
#: CAMPAIGNBOT_* variables
SCREENSHOTS = os.environ.get("CAMPAIGNBOT_TEST_SCREENSHOTS")
PASSWORD = "browser test passphrase"
#: a past alert of the shipped config, seeded into the ledger with outcomes
ALERT = "fi-withdrawal-effective:0"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed"
    if not AXE_JS.exists():
        return f"{AXE_JS} is missing: npm ci --prefix .ci/axe"
    return None


# In CI a missing browser or axe-core fails the test (.ci/run installs both); locally it skips.
pytestmark = pytest.mark.skipif(
    _missing() is not None and not os.environ.get("CI"), reason=str(_missing())
)


def _campaign_file(folder: Path) -> Path:
    """The shipped campaign plus an event ten days ahead, so the timeline always has one."""
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    path = folder / "campaign.toml"
    path.write_text(
        (REPO / "config" / "campaign.toml").read_text()
        + f"""
[[events]]
id = "browser-test-vote"
title = "Browser test: a vote in ten days"
when = {day.isoformat()}T10:00:00
timezone = "Europe/Helsinki"
reminders = ["1d", "0"]
"""
    )
    return path


async def _seed(url: str, config: Path) -> None:
    """Three subscribers; the shipped config's ALERT fired to two: one sent, one refused."""
    db = open_database(url)
    try:
        await db.upgrade()
        store, ledger = SubscriberStore(db), Ledger(db, owner="seed")
        now = datetime.now(UTC)
        for email, locale in [
            ("delivered@example.org", "fi"),
            ("refused@example.org", "en"),
        ]:
            entry = SubscriberInput.create(email, locale=locale, timezone="Europe/Helsinki")
            await store.add(entry, now=now, source="test")
        campaign = load_campaign(config)
        event = campaign.event(ALERT.split(":")[0])
        alert = next(
            a for a in alerts_for_event(event, campaign.campaign.send_at) if a.key == ALERT
        )
        await ledger.fire_alert(alert, audience_clause(event.audience), now=now)
        by_email = {c.email: c.delivery_id for c in await ledger.claim(10, now=now, lease_s=60)}
        await ledger.record(
            [
                Sent(by_email["delivered@example.org"], "<seed@example.org>"),
                Failed(by_email["refused@example.org"], 550, "550 5.1.1 no such mailbox"),
            ],
            now=now,
        )
        # added after the alert: not in its audience, found by the search
        entry = SubscriberInput.create("target@example.org", locale="pl", timezone="Europe/Warsaw")
        await store.add(entry, now=now, source="test")
    finally:
        await db.dispose()


@dataclass
class RunProcess:
    admin_url: str
    public_url: str
    database: Path

    def status(self, email: str) -> str | None:
        with sqlite3.connect(self.database) as conn:
            row = conn.execute(
                "SELECT status FROM subscribers WHERE email_key = ?", (email.lower(),)
            ).fetchone()
        return str(row[0]) if row else None


@pytest.fixture
def run_process(
    tmp_path: Path, smtp_server_thread: Callable[..., ThreadedSMTPServer]
) -> Iterator[RunProcess]:
    """`campaignbot run` with its admin listener on a free loopback port, one user `alice`."""
    smtp = smtp_server_thread()
    database = tmp_path / "run.db"
    config = _campaign_file(tmp_path)
    asyncio.run(_seed(f"sqlite:///{database}", config))
    users_file = tmp_path / "var" / "admin-users.toml"
    add_user(users_file, "alice", PASSWORD, now=datetime.now(UTC))
    http_port, admin_port = free_port(), free_port()
    public_url, admin_url = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{admin_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env |= smtp.env() | {
        "CAMPAIGNBOT_TEMPLATES": str(REPO / "templates"),
        "CAMPAIGNBOT_DATABASE_URL": f"sqlite:///{database}",
        "CAMPAIGNBOT_SECRET_KEY": "browser-test-secret-0123456789-abcdef",
        "CAMPAIGNBOT_PUBLIC_URL": public_url,
        "CAMPAIGNBOT_HTTP__PORT": str(http_port),
        "CAMPAIGNBOT_ADMIN__PORT": str(admin_port),
        "CAMPAIGNBOT_ADMIN__USERS_FILE": str(users_file),
    }
    command = [sys.executable, "-m", "campaignbot", "--config", str(config)]
    with served([*command, "run"], cwd=tmp_path, env=env, ready_url=f"{admin_url}/readyz"):
        yield RunProcess(admin_url, public_url, database)


def _axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the current page."""
    page.add_script_tag(path=str(AXE_JS))
    results = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_21_AA
    )
    return [
        {"id": v["id"], "help": v["help"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in results["violations"]
    ]


def _screenshot(page: Any, name: str, tmp_path: Path) -> None:
    """Into tmp_path; also into CAMPAIGNBOT_TEST_SCREENSHOTS (e.g. docs/) when it is set."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if SCREENSHOTS:
        shutil.copyfile(path, Path(SCREENSHOTS) / path.name)


def test_log_in_open_the_timeline_and_an_alert_and_suppress_an_address(
    run_process: RunProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert _missing() is None, _missing()
    site = run_process
    checked: dict[str, list[dict[str, Any]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: the pages forbid scripts; only the test's axe-core may run
            context = browser.new_context(bypass_csp=True, viewport={"width": 1100, "height": 800})
            page = context.new_page()
            page.goto(f"{site.admin_url}/admin")
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            checked["login"] = _axe_violations(page)

            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Timeline: the next 30 days")).to_be_visible()
            expect(page.get_by_role("img", name="Alerts on a time axis")).to_be_visible()
            checked["timeline"] = _axe_violations(page)
            _screenshot(page, "dashboard-timeline", tmp_path)

            # an upcoming alert: when it is due, and the "send a test to me" form
            upcoming = page.get_by_role("table", name="Upcoming alerts")
            upcoming.get_by_role("link", name="Browser test: a vote in ten days").first.click()
            expect(page.get_by_role("heading", name="Send a test to me")).to_be_visible()
            expect(page.get_by_text("is scheduled: due")).to_be_visible()
            checked["scheduled alert"] = _axe_violations(page)

            page.get_by_role("link", name="Alerts", exact=True).click()
            expect(page.get_by_role("heading", name="Alerts sent and skipped")).to_be_visible()
            checked["alerts"] = _axe_violations(page)
            page.get_by_role("link", name=ALERT).click()
            expect(page.get_by_role("progressbar", name="sent")).to_have_attribute("value", "1")
            expect(page.get_by_role("progressbar", name="failed")).to_have_attribute("value", "1")
            failures = page.get_by_role("table", name="Deliveries that failed")
            expect(failures).to_contain_text("refused@example.org")
            expect(failures).to_contain_text("550 5.1.1 no such mailbox")
            checked["alert"] = _axe_violations(page)
            _screenshot(page, "dashboard-alert", tmp_path)

            page.get_by_role("link", name="Subscribers").click()
            page.get_by_label("Address contains").fill("target")
            page.get_by_role("button", name="Search").click()
            page.get_by_role("button", name="Suppress target@example.org").click()
            expect(page.get_by_role("status")).to_contain_text("now suppressed")
            expect(page.get_by_role("button", name="Unsuppress target@example.org")).to_be_visible()
            assert site.status("target@example.org") == "suppressed"
            checked["subscribers"] = _axe_violations(page)
            _screenshot(page, "dashboard-subscribers", tmp_path)

            page.get_by_role("link", name="Campaign").click()
            expect(page.get_by_role("heading", name="The file on disk")).to_be_visible()
            checked["campaign"] = _axe_violations(page)

            page.get_by_role("link", name="Health").click()
            expect(page.get_by_role("heading", name="Health", exact=False)).to_be_visible()
            checked["health"] = _axe_violations(page)

            page.get_by_role("button", name="Log out alice").click()
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        finally:
            browser.close()
    assert set(checked) == {
        "login",
        "timeline",
        "alerts",
        "alert",
        "scheduled alert",
        "subscribers",
        "campaign",
        "health",
    }
    assert {name: v for name, v in checked.items() if v} == {}
