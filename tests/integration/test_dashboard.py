"""The organizer dashboard (`/admin`) on the admin listener, against a real Service:
real database (SQLite and PostgreSQL), real SMTP server, the shipped config and
templates, requests through httpx's ASGI transport."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaignbot.delivery.ledger import Failed, Sent
from campaignbot.service.runtime import Service
from campaignbot.settings import AdminSettings, Settings
from campaignbot.subscribers.model import Subscriber, SubscriberInput, SubscriberStatus
from campaignbot.subscribers.store import audience_clause
from campaignbot.web.admin import create_admin_app
from campaignbot.web.app import create_app
from campaignbot.web.dashboard.accounts import add_token, add_user
from tests.clock import FakeClock
from tests.fixtures.smtp import SMTPServer

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-for-dashboard-0123456789"
ADMIN = "http://127.0.0.1:8081"
#: ten days before MSP-22 (2026-12-07): its 7d, 1d and 0 reminders are within 30 days
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"

#: every dashboard page a GET may ask for
PAGES = [
    "/admin/timeline",
    "/admin/alerts",
    "/admin/alerts/msp-22:7d",
    "/admin/subscribers",
    "/admin/subscribers?q=example",
    "/admin/subscribers/export.csv",
    "/admin/health",
]
POSTS = ["/admin/logout", "/admin/subscribers/suppress", "/admin/subscribers/unsuppress"]


@dataclass
class Desk:
    """One running admin listener with the dashboard, and the public app beside it."""

    service: Service
    admin: httpx.AsyncClient
    public: httpx.AsyncClient
    smtp: SMTPServer
    clock: FakeClock
    users_file: Path

    async def add(self, email: str, *, locale: str = "en", **fields: Any) -> Subscriber:
        entry = SubscriberInput.create(email, locale=locale, timezone="Europe/Helsinki", **fields)
        return await self.service.store.add(entry, now=self.clock(), source="test")

    async def login(self, user: str = "alice", password: str = PASSWORD) -> httpx.Response:
        form = await self.admin.get("/admin/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert match, form.text
        return await self.admin.post(
            "/admin/login",
            data={"csrf_token": match.group(1), "username": user, "password": password},
        )

    async def csrf(self, path: str = "/admin/subscribers") -> str:
        page = await self.admin.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, page.text
        return match.group(1)

    def token(self, *scopes: str) -> dict[str, str]:
        bearer = add_token(self.users_file, "test", list(scopes), now=self.clock())
        return {"authorization": f"Bearer {bearer}"}

    async def status(self, email: str) -> SubscriberStatus | None:
        subscriber = await self.service.store.get_by_email(email)
        return subscriber.status if subscriber else None


DeskFactory = Callable[[], Awaitable[Desk]]


@pytest.fixture
async def desk(
    database_url: str, smtp_server: Callable[..., Awaitable[SMTPServer]], tmp_path: Path
) -> AsyncIterator[DeskFactory]:
    """Factory: a Service with one dashboard user `alice`; closed afterwards."""
    closers: list[Callable[[], Awaitable[None]]] = []

    async def make() -> Desk:
        server = await smtp_server()
        users_file = tmp_path / "var" / "admin-users.toml"
        settings = Settings(
            config=REPO / "config" / "campaign.toml",
            templates=REPO / "templates",
            database_url=database_url,
            smtp=server.smtp_settings(),
            secret_key=SECRET,
            public_url="http://testserver",
            var_dir=tmp_path / "var",
            admin=AdminSettings(users_file=users_file),
        )
        clock = FakeClock(NOW)
        add_user(users_file, "alice", PASSWORD, now=clock())
        service = Service(settings, clock=clock, web=False)
        await service.db.upgrade()
        admin_app = create_admin_app(service.admin_context())
        public_app = create_app(service.web_context())
        admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url=ADMIN)
        public = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=public_app), base_url="http://testserver"
        )

        async def close() -> None:
            await admin.aclose()
            await public.aclose()
            service.scheduler.shutdown()
            await service.transport.aclose()
            await service.db.dispose()

        closers.append(close)
        return Desk(service, admin, public, server, clock, users_file)

    yield make
    for close in reversed(closers):
        await close()


async def fire_with_outcomes(d: Desk) -> None:
    """MSP-22's 7d reminder fired to three subscribers: one sent, one refused (550), one open."""
    for email in ("sent@example.org", "refused@example.org", "waiting@example.org"):
        await d.add(email)
    alert = next(a for a in d.service.snapshot.plan if a.key == "msp-22:7d")
    event = d.service.campaign.event("msp-22")
    await d.service.ledger.fire_alert(alert, audience_clause(event.audience), now=d.clock())
    claims = await d.service.ledger.claim(10, now=d.clock(), lease_s=60)
    by_email = {c.email: c.delivery_id for c in claims}
    await d.service.ledger.record(
        [
            Sent(by_email["sent@example.org"], "<m1@example.org>"),
            Failed(by_email["refused@example.org"], 550, "550 5.1.1 mailbox unknown"),
        ],
        now=d.clock(),
    )
    await d.service.ledger.release(now=d.clock(), delivery_ids=[by_email["waiting@example.org"]])


# -- access --------------------------------------------------------------------------


async def test_every_admin_page_needs_a_login_and_every_post_a_session(desk: DeskFactory) -> None:
    d = await desk()
    await d.add("someone@example.org")
    for path in [*PAGES, "/admin/", "/admin/alerts/nope:0"]:
        response = await d.admin.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/admin/login", path
    for path in POSTS:
        response = await d.admin.post(path, data={"email": "someone@example.org"})
        assert response.status_code == 403, path
    assert await d.status("someone@example.org") is SubscriberStatus.ACTIVE


async def test_a_forged_session_cookie_is_no_session(desk: DeskFactory) -> None:
    d = await desk()
    d.admin.cookies.set("campaignbot_admin", "eyJ1IjoiYWxpY2UifQ.forged.sig", path="/admin")
    assert (await d.admin.get("/admin/timeline")).status_code == 303


async def test_nothing_under_admin_or_api_on_the_public_port(desk: DeskFactory) -> None:
    d = await desk()
    for path in [
        "/admin",
        "/admin/",
        "/admin/login",
        "/admin/timeline",
        "/api/alerts",
        "/api/openapi.json",
        "/api/subscribers",
    ]:
        assert (await d.public.get(path)).status_code == 404, path
    response = await d.public.post("/admin/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code in (404, 405)


async def test_probes_and_metrics_stay_open_on_the_admin_listener(desk: DeskFactory) -> None:
    d = await desk()
    for path in ["/livez", "/readyz", "/metrics"]:
        assert (await d.admin.get(path)).status_code == 200, path
    assert (await d.admin.get("/healthz")).status_code in (200, 503)  # open: no login asked


async def test_login_logout_and_the_login_forms_csrf(desk: DeskFactory) -> None:
    d = await desk()
    no_form = await d.admin.post(
        "/admin/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "x"}
    )
    assert no_form.status_code == 403
    response = await d.login()
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/timeline"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    page = await d.admin.get("/admin/timeline")
    assert page.status_code == 200
    assert "Log out alice" in page.text
    await d.admin.post("/admin/logout", data={"csrf_token": await d.csrf()})
    assert (await d.admin.get("/admin/timeline")).status_code == 303


async def test_failed_logins_are_rate_limited(desk: DeskFactory) -> None:
    d = await desk()
    for _ in range(5):
        assert (await d.login(password="wrong password!")).status_code == 401
    blocked = await d.login()  # even the right password waits
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed logins" in blocked.text
    d.clock.advance(minutes=16)
    assert (await d.login()).status_code == 303


async def test_unknown_user_fails_like_a_wrong_password(desk: DeskFactory) -> None:
    d = await desk()
    response = await d.login(user="mallory")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text


async def test_a_new_password_ends_open_sessions(desk: DeskFactory) -> None:
    d = await desk()
    await d.login()
    assert (await d.admin.get("/admin/timeline")).status_code == 200
    add_user(d.users_file, "alice", "another long password", now=d.clock())
    assert (await d.admin.get("/admin/timeline")).status_code == 303


# -- pages ---------------------------------------------------------------------------


async def test_timeline_shows_the_next_30_days_with_audience_by_locale(desk: DeskFactory) -> None:
    d = await desk()
    await d.add("a@example.org", locale="fi")
    await d.add("b@example.org", locale="fi")
    await d.add("c@example.org", locale="en")
    await d.login()
    page = await d.admin.get("/admin/timeline")
    html = page.text
    assert page.status_code == 200
    assert "<script" not in html
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for key in ("msp-22:7d", "msp-22:1d", "msp-22:0"):
        assert f'href="/admin/alerts/{key}"' in html
    assert "2026-11-30 09:00" in html  # UTC
    assert "2026-11-30 10:00 CET" in html  # the event's own zone (Geneva)
    assert "en 1, fi 2" in html
    assert 'role="img"' in html and "<circle" in html
    assert "ee-riigikogu-election" not in html  # February 2027: beyond 30 days


async def test_alert_detail_shows_progress_and_failures(desk: DeskFactory) -> None:
    d = await desk()
    await fire_with_outcomes(d)
    await d.login()
    page = await d.admin.get("/admin/alerts/msp-22:7d")
    html = page.text
    assert page.status_code == 200
    assert re.search(r'<progress max="3" value="1" aria-labelledby="bar-sent">', html)
    assert re.search(r'<progress max="3" value="1" aria-labelledby="bar-failed">', html)
    assert re.search(r'<progress max="3" value="1" aria-labelledby="bar-pending">', html)
    assert "refused@example.org" in html and "550" in html and "mailbox unknown" in html
    assert "sent@example.org" not in html  # only failures are listed
    listing = await d.admin.get("/admin/alerts")
    assert 'href="/admin/alerts/msp-22:7d"' in listing.text
    missing = await d.admin.get("/admin/alerts/nope:0")
    assert missing.status_code == 404


async def test_subscribers_counts_growth_search_and_export(desk: DeskFactory) -> None:
    d = await desk()
    await d.add("old@example.org", countries=["FI"], topics=["mine-ban-treaty"])
    d.clock.advance(days=2)
    await d.add("new@example.org", locale="pl", countries=["PL"])
    await d.add("=formula@example.org")
    await d.login()
    page = await d.admin.get("/admin/subscribers", params={"q": "NEW@"})
    html = page.text
    assert page.status_code == 200
    assert "<polyline" in html and 'role="img"' in html
    assert '<td>FI</td><td class="num">1</td>' in html
    assert '<td>PL</td><td class="num">1</td>' in html
    assert '<td>mine-ban-treaty</td><td class="num">1</td>' in html
    assert '<td>active</td><td class="num">3</td>' in html
    assert "new@example.org" in html and "old@example.org" not in html.split("Growth")[0]
    csv = await d.admin.get("/admin/subscribers/export.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert "old@example.org,," in csv.text or "old@example.org" in csv.text
    assert "'=formula@example.org" in csv.text  # spreadsheet-safe


async def test_suppress_and_unsuppress_need_the_csrf_token(desk: DeskFactory) -> None:
    d = await desk()
    await d.add("someone@example.org")
    await d.login()
    forged = await d.admin.post(
        "/admin/subscribers/suppress", data={"email": "someone@example.org", "csrf_token": "x"}
    )
    assert forged.status_code == 403
    assert await d.status("someone@example.org") is SubscriberStatus.ACTIVE
    token = await d.csrf()
    done = await d.admin.post(
        "/admin/subscribers/suppress", data={"email": "someone@example.org", "csrf_token": token}
    )
    assert done.status_code == 303
    assert await d.status("someone@example.org") is SubscriberStatus.BOUNCED
    page = await d.admin.get(done.headers["location"])
    assert "Unsuppress someone@example.org" in page.text
    await d.admin.post(
        "/admin/subscribers/unsuppress", data={"email": "someone@example.org", "csrf_token": token}
    )
    assert await d.status("someone@example.org") is SubscriberStatus.ACTIVE


async def test_health_page_shows_what_healthz_reports(desk: DeskFactory) -> None:
    d = await desk()
    await d.login()
    page = await d.admin.get("/admin/health")
    assert page.status_code == 200
    assert '<th scope="row">database</th>' in page.text
    assert '<th scope="row">transport</th>' in page.text
    assert "Next alert" in page.text


async def test_every_page_renders_for_a_logged_in_user(desk: DeskFactory) -> None:
    d = await desk()
    await fire_with_outcomes(d)
    await d.login()
    for path in PAGES:
        response = await d.admin.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path


def test_clock_window_constant() -> None:
    # the timeline test relies on MSP-22 falling inside the 30-day window from NOW
    assert datetime(2026, 12, 7, tzinfo=UTC) - NOW < timedelta(days=30)
