"""The organizer dashboard (`/admin`) on the admin listener, against a real Service:
real database (SQLite and PostgreSQL), real SMTP server, the shipped config and
templates, requests through httpx's ASGI transport."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from campaignbot.subscribers.model import SubscriberStatus
from campaignbot.web.dashboard.accounts import add_user
from tests.fixtures.smtp import SMTPServer
from tests.integration.dashboard_site import (
    NOW,
    PASSWORD,
    REPO,
    DeskFactory,
    desks,
    fire_with_outcomes,
)

#: every dashboard page a GET may ask for
PAGES = [
    "/admin/timeline",
    "/admin/alerts",
    "/admin/alerts/msp-22:7d",
    "/admin/subscribers",
    "/admin/subscribers?q=example",
    "/admin/subscribers/export.csv",
    "/admin/campaign",
    "/admin/health",
]
POSTS = [
    "/admin/logout",
    "/admin/subscribers/suppress",
    "/admin/subscribers/unsuppress",
    "/admin/alerts/msp-22:1d/test",
]


@pytest.fixture
async def desk(
    database_url: str, smtp_server: Callable[..., Awaitable[SMTPServer]], tmp_path: Path
) -> AsyncIterator[DeskFactory]:
    async with desks(database_url, smtp_server, tmp_path) as make:
        yield make


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


async def test_an_alert_not_fired_yet_shows_when_it_is_due_and_sends_a_test(
    desk: DeskFactory,
) -> None:
    d = await desk()
    await d.login()
    page = await d.admin.get("/admin/alerts/msp-22:1d")
    assert page.status_code == 200
    assert "is scheduled: due 2026-12-06 09:00 UTC (2026-12-06 10:00 CET event time)" in page.text
    token = await d.csrf("/admin/alerts/msp-22:1d")
    bad = await d.admin.post(
        "/admin/alerts/msp-22:1d/test", data={"csrf_token": token, "email": "not an address"}
    )
    assert bad.status_code == 400
    assert 'role="alert"' in bad.text
    sent = await d.admin.post(
        "/admin/alerts/msp-22:1d/test", data={"csrf_token": token, "email": "Me@Example.org"}
    )
    assert sent.status_code == 303
    assert (
        "A test message was sent to Me@example.org"
        in (await d.admin.get(sent.headers["location"])).text
    )
    await d.smtp.wait_for_messages(1)
    assert [m.message["To"] for m in d.smtp.messages] == ["Me@example.org"]
    assert "Twenty-Second Meeting" in d.smtp.messages[0].message["Subject"]
    # the ledger is not touched
    assert (await d.service.ledger.status_summary(now=d.clock())).alerts == []
    unknown = await d.admin.post(
        "/admin/alerts/nope:0/test", data={"csrf_token": token, "email": "me@example.org"}
    )
    assert unknown.status_code == 404
    assert len(d.smtp.messages) == 1


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
    assert await d.status("someone@example.org") is SubscriberStatus.SUPPRESSED
    page = await d.admin.get(done.headers["location"])
    assert "Unsuppress someone@example.org" in page.text
    await d.admin.post(
        "/admin/subscribers/unsuppress", data={"email": "someone@example.org", "csrf_token": token}
    )
    assert await d.status("someone@example.org") is SubscriberStatus.ACTIVE


async def test_campaign_page_previews_what_saving_the_file_changes(
    desk: DeskFactory, tmp_path: Path
) -> None:
    config = tmp_path / "campaign.toml"
    shipped = (REPO / "config" / "campaign.toml").read_text()
    config.write_text(shipped)
    d = await desk(config=config)
    await d.login()
    same = await d.admin.get("/admin/campaign")
    assert "nothing would change" in same.text
    assert "<code>msp-22</code>" in same.text
    # MSP-22 a day later: its reminders move and those already alerted get a notice
    config.write_text(shipped.replace("when = 2026-12-07T10:00:00", "when = 2026-12-08T10:00:00"))
    moved = await d.admin.get("/admin/campaign")
    html = moved.text
    assert "make these changes" in html
    assert re.search(
        r"<td>moved</td>\s*<td>msp-22</td>\s*<td>1d</td>\s*"
        r"<td>2026-12-06 09:00</td>\s*<td>2026-12-07 09:00</td>",
        html,
    ), html
    assert "notice: rescheduled (to subscribers already alerted)" in html
    config.write_text(shipped.replace('id = "msp-22"', 'id = "MSP 22!"'))
    broken = await d.admin.get("/admin/campaign")
    assert broken.status_code == 200
    assert "a reload would be refused" in broken.text
    assert "events[" in broken.text  # the problem names its place in the file
    assert "<code>msp-22</code>" in broken.text  # the running campaign is unchanged


async def test_a_template_folder_without_admin_pages_leaves_the_rest_running(
    desk: DeskFactory, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates, ignore=shutil.ignore_patterns("admin"))
    d = await desk(templates=templates)
    response = await d.admin.get("/admin/login")
    assert response.status_code == 503
    assert f"{templates / 'admin'}: dashboard templates not found" in response.text
    assert (await d.admin.get("/livez")).status_code == 200
    assert (await d.admin.get("/api/openapi.json")).status_code == 200


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
