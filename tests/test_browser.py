"""A real browser (Chromium through Playwright) against a real `campaignbot web` process:
sign up with the form, confirm from the email the SMTP server received, unsubscribe."""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.smtp import ThreadedSMTPServer
from tests.processes import free_port, served

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")


@dataclass
class WebProcess:
    url: str
    database: Path
    smtp: ThreadedSMTPServer

    def status(self, email: str) -> str | None:
        with sqlite3.connect(self.database) as conn:
            row = conn.execute(
                "SELECT status FROM subscribers WHERE email_key = ?", (email.lower(),)
            ).fetchone()
        return str(row[0]) if row else None

    def pending(self, email: str) -> bool:
        """A sign-up waits for its confirmation (not yet a subscriber)."""
        with sqlite3.connect(self.database) as conn:
            row = conn.execute(
                "SELECT count(*) FROM signups WHERE email_key = ? AND confirmed_at IS NULL",
                (email.lower(),),
            ).fetchone()
        return bool(row[0])


@pytest.fixture
def web_process(
    tmp_path: Path, smtp_server_thread: Callable[..., ThreadedSMTPServer]
) -> Iterator[WebProcess]:
    """`campaignbot web` on a free loopback port, mailing to a test SMTP server."""
    smtp = smtp_server_thread()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    database = tmp_path / "web.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env |= smtp.env() | {
        "CAMPAIGNBOT_TEMPLATES": str(REPO / "templates"),
        "CAMPAIGNBOT_DATABASE_URL": f"sqlite:///{database}",
        "CAMPAIGNBOT_SECRET_KEY": "browser-test-secret-0123456789abcdef",
        "CAMPAIGNBOT_PUBLIC_URL": url,
    }
    command = [sys.executable, "-m", "campaignbot", "--config", str(REPO / "config/campaign.toml")]
    serve = [*command, "web", "--host", "127.0.0.1", "--port", str(port)]
    with served(serve, cwd=tmp_path, env=env, ready_url=f"{url}/healthz"):
        yield WebProcess(url, database, smtp)


def test_sign_up_confirm_and_unsubscribe_in_a_browser(web_process: WebProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    site = web_process
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(locale="pl-PL")
            page.goto(site.url)
            expect(page.locator("html")).to_have_attribute("lang", "pl")
            page.get_by_role("link", name="English").click()
            expect(page.locator("html")).to_have_attribute("lang", "en")
            expect(page.get_by_role("heading", name="Upcoming events")).to_be_visible()

            # the form, as a keyboard or screen reader user finds it: by its labels
            page.get_by_label("Email address").fill("browser@example.org")
            page.get_by_label("Name (optional)").fill("Bro Wser")
            page.get_by_label("Language of the emails").select_option("fi")
            page.get_by_role("checkbox", name="Finland", exact=True).check()
            page.get_by_role("button", name="Subscribe").click()
            expect(page.get_by_role("heading", name="Tarkista sähköpostisi")).to_be_visible()
            site.smtp.wait_for_messages(1)
            assert site.pending("browser@example.org")
            assert site.status("browser@example.org") is None
            mail = site.smtp.messages[0].message
            body = mail.get_body(("plain",))
            assert body is not None
            match = re.search(re.escape(site.url) + r"/confirm\?t=[\w.\-]+", body.get_content())
            assert match, body.get_content()

            page.goto(match.group(0))
            expect(page.get_by_role("heading", name="Vahvista tilaus")).to_be_visible()
            assert site.status("browser@example.org") is None  # GET changes nothing
            page.get_by_role("button", name="Kyllä, vahvista").click()
            expect(page.get_by_role("heading", name="Tilauksesi on voimassa")).to_be_visible()
            assert site.status("browser@example.org") == "active"

            page.get_by_role("link", name="Peru tilaus").click()
            expect(page.get_by_role("heading", name="Peru tilaus")).to_be_visible()
            assert site.status("browser@example.org") == "active"  # GET changes nothing
            page.get_by_role("button", name="Kyllä, peru tilaus").click()
            expect(page.get_by_role("heading", name="Tilauksesi on peruttu")).to_be_visible()
            assert site.status("browser@example.org") == "unsubscribed"
        finally:
            browser.close()


def test_the_form_reports_a_bad_address_accessibly(web_process: WebProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(locale="en-GB")
            page.goto(web_process.url)
            # keyboard only: the skip link comes first, then the form can be filled
            page.keyboard.press("Tab")
            expect(page.get_by_role("link", name="Skip to the main content")).to_be_focused()
            page.get_by_label("Email address").fill("not an address")
            page.get_by_label("Email address").press("Enter")
            expect(page.get_by_role("alert")).to_contain_text("Enter a valid email address")
            email = page.get_by_label("Email address")
            expect(email).to_have_attribute("aria-invalid", "true")
            expect(email).to_have_value("not an address")
            assert web_process.status("not an address") is None
        finally:
            browser.close()
