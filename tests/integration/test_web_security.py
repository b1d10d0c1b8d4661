"""The public surface hardened (issue 14): link tokens bound to the subscriber's state,
the sign-up form's abuse limits, trusted proxies, the confirm page, Host checks and
headers, the privacy page. Real app, real database (SQLite and PostgreSQL), real SMTP."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, text

from campaignbot.campaign.planning import alerts_for_event
from campaignbot.email.tokens import LinkSigner
from campaignbot.service.runtime import Service
from campaignbot.settings import HTTPSettings, Settings
from campaignbot.subscribers.model import Subscriber, SubscriberStatus
from campaignbot.subscribers.store import audience_clause
from campaignbot.web.app import create_app
from tests.clock import FakeClock
from tests.integration import test_web
from tests.integration.test_web import BASE, NOW, REPO, SECRET, Site, SiteFactory, confirm_link
from tests.processes import free_port

DAY = timedelta(days=1)
site = test_web.site  # the fixture: a running app over a real database and SMTP server


def sign(s: Site, purpose: str, subscriber: Subscriber, **signer: Any) -> str:
    """A token as the app's emails carry it (with the row's link nonce)."""
    signer_ = LinkSigner(SECRET, **signer) if signer else s.service.signer
    nonce = getattr(subscriber, "link_nonce", "")  # (before issue 14 there was none)
    if not nonce:
        return signer_.sign(purpose, subscriber.id)
    return signer_.sign(purpose, subscriber.id, nonce)


async def confirm(s: Site, link: str) -> httpx.Response:
    """Follow a confirm link as a person does: open it, press the button."""
    page = await s.client.get(link)
    assert page.status_code == 200, page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, page.text
    return await s.client.post(action.group(1).replace("&amp;", "&"))


async def pending(s: Site, email: str) -> bool:
    """Whether a sign-up for `email` waits for confirmation."""
    async with s.service.db.engine.connect() as conn:
        query = text("SELECT count(*) FROM signups WHERE email_key = :k AND confirmed_at IS NULL")
        return bool((await conn.execute(query, {"k": email.lower()})).scalar())


async def settled(s: Site) -> None:
    """Let the sign-up drain that follows a POST finish."""
    for _ in range(50):
        await asyncio.sleep(0.02)
        web = s.app.state.web
        if not web.tasks:
            return


# -- 1. old links never control anyone else ----------------------------------------------


async def test_a_deleted_subscribers_old_links_never_reach_the_next_one(site: SiteFactory) -> None:
    s = await site()
    leaver = await s.add("leaver@example.org")
    preferences = sign(s, "preferences", leaver)
    unsubscribe = sign(s, "unsubscribe", leaver)
    assert await s.service.store.remove("leaver@example.org")
    newcomer = await s.add("newcomer@example.org")
    assert newcomer.id != leaver.id  # SQLite too: AUTOINCREMENT

    page = await s.client.get("/preferences", params={"t": preferences})
    assert page.status_code == 400
    assert "newcomer@example.org" not in page.text
    await s.client.post("/unsubscribe", params={"t": unsubscribe})
    assert await s.status("newcomer@example.org") is SubscriberStatus.ACTIVE


async def test_an_id_is_not_reused_even_for_the_highest_row(site: SiteFactory) -> None:
    s = await site()
    first = await s.add("one@example.org")
    await s.service.store.remove("one@example.org")
    second = await s.add("two@example.org")
    assert second.id > first.id


async def test_preferences_links_expire_after_90_days(site: SiteFactory) -> None:
    s = await site()
    subscriber = await s.add("old@example.org")
    recent = sign(s, "preferences", subscriber, clock=lambda: time.time() - 89 * 86400)
    stale = sign(s, "preferences", subscriber, clock=lambda: time.time() - 91 * 86400)
    assert (await s.client.get("/preferences", params={"t": recent})).status_code == 200
    expired = await s.client.get("/preferences", params={"t": stale})
    assert expired.status_code == 400
    assert "old@example.org" not in expired.text


async def test_an_old_unsubscribe_link_keeps_answering_until_the_person_is_back(
    site: SiteFactory,
) -> None:
    s = await site()
    subscriber = await s.add("back@example.org")
    old = {"t": sign(s, "unsubscribe", subscriber)}
    preferences = {"t": sign(s, "preferences", subscriber)}
    assert (await s.client.post("/unsubscribe", params=old)).status_code == 200
    assert await s.status("back@example.org") is SubscriberStatus.UNSUBSCRIBED
    # RFC 8058: the header in an old email still works, and changes nothing
    assert (await s.client.post("/unsubscribe", params=old)).status_code == 200
    assert (await s.client.get("/unsubscribe", params=old)).status_code == 200
    # but the other links of that email no longer show the address
    gone = await s.client.get("/preferences", params=preferences)
    assert gone.status_code == 400
    assert "back@example.org" not in gone.text

    await s.subscribe("back@example.org")
    await s.smtp.wait_for_messages(1)
    assert (await confirm(s, confirm_link(s))).status_code == 200
    assert await s.status("back@example.org") is SubscriberStatus.ACTIVE
    again = await s.client.post("/unsubscribe", params=old)
    assert again.status_code == 400
    assert await s.status("back@example.org") is SubscriberStatus.ACTIVE


async def test_alert_links_work_and_the_calendar_link_is_the_public_feed(
    site: SiteFactory,
) -> None:
    s = await site()
    await s.add("reader@example.org", topics=["mine-ban-treaty"])
    event_ = s.service.campaign.event("msp-22")
    alert = alerts_for_event(event_, s.service.campaign.campaign.send_at)[0]
    await s.service.ledger.fire_alert(alert, audience_clause(event_.audience), now=s.clock())
    assert await s.service.sender.run_until_idle() == {"sent": 1}
    body = s.smtp.messages[0].message.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert "webcal://testserver/events.ics" in content
    assert "events.ics?t=" not in content
    link = re.search(re.escape(BASE) + r"(/preferences\?t=[\w.\-]+)", content)
    assert link
    assert (await s.client.get(link.group(1))).status_code == 200
    header = s.smtp.messages[0].message["List-Unsubscribe"]
    unsubscribe = re.search(r"<" + re.escape(BASE) + r"(/unsubscribe\?t=[\w.\-]+)>", header)
    assert unsubscribe
    assert (await s.client.post(unsubscribe.group(1))).status_code == 200
    assert await s.status("reader@example.org") is SubscriberStatus.UNSUBSCRIBED


async def test_the_calendar_feed_ignores_tokens(site: SiteFactory) -> None:
    s = await site()
    response = await s.client.get("/events.ics", params={"t": "forged.token.here"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "max-age=300"


# -- 2. the sign-up form cannot be used to mail-bomb or to change others ----------------


async def test_one_confirmation_per_address_per_day(site: SiteFactory) -> None:
    s = await site(subscribe_limit=(100, 60.0))
    answers = {(await s.subscribe("victim@example.net")).text for _ in range(6)}
    assert len(answers) == 1
    await s.smtp.wait_for_messages(1)
    await settled(s)
    await asyncio.sleep(0.2)
    assert len(s.smtp.messages) == 1
    s.clock.advance(hours=25)
    await s.subscribe("victim@example.net")
    await s.smtp.wait_for_messages(2)
    await settled(s)
    assert len(s.smtp.messages) == 2


async def test_the_confirmation_mail_carries_no_visitor_text(site: SiteFactory) -> None:
    s = await site()
    spam = "Visit http://evil.example/claim to get your refund"
    await s.subscribe("victim@example.net", name=spam)
    await s.smtp.wait_for_messages(1)
    message = s.smtp.messages[0].message
    assert message["To"] == "victim@example.net"
    raw = s.smtp.messages[0].message.as_string()
    assert "evil.example" not in raw
    assert "refund" not in raw


async def test_a_third_party_cannot_change_an_existing_subscriber(site: SiteFactory) -> None:
    s = await site()
    subscriber = await s.add("left@example.org", countries=["FI"])
    await s.service.store.set_status(subscriber.id, SubscriberStatus.UNSUBSCRIBED, now=s.clock())
    before = await s.service.store.get(subscriber.id)
    await s.subscribe(
        "left@example.org", name="Changed by attacker", locale="pl", topics="elections"
    )
    await s.smtp.wait_for_messages(1)
    await settled(s)
    assert await s.service.store.get(subscriber.id) == before
    # the owner of the address confirms: now the new choices apply
    assert (await confirm(s, confirm_link(s))).status_code == 200
    after = await s.service.store.get(subscriber.id)
    assert after is not None
    assert after.status is SubscriberStatus.ACTIVE
    assert after.topics == {"elections"}
    assert after.consent_at == s.clock()


async def test_pending_sign_ups_are_purged_after_7_days(site: SiteFactory) -> None:
    s = await site()
    await s.subscribe("forgot@example.org")
    await s.smtp.wait_for_messages(1)
    await settled(s)
    link = confirm_link(s)
    assert await pending(s, "forgot@example.org")
    s.clock.advance(days=8)
    await s.subscribe("someone-else@example.org")  # a drain runs
    await s.smtp.wait_for_messages(2)
    await settled(s)
    assert not await pending(s, "forgot@example.org")
    assert await s.status("forgot@example.org") is None
    assert (await s.client.get(link)).status_code == 400


# -- 3. the rate limit trusts forwarded headers only from configured proxies --------------


async def _post_many(client: httpx.AsyncClient, headers: list[dict[str, str]]) -> list[int]:
    page = await client.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    codes = []
    for n, extra in enumerate(headers):
        response = await client.post(
            "/subscribe",
            data={"csrf_token": token.group(1), "email": f"r{n}@example.org", "locale": "en"},
            headers=extra,
        )
        codes.append(response.status_code)
    return codes


async def test_uvicorn_does_not_let_loopback_clients_pick_their_address(
    database_url: str, tmp_path: Path
) -> None:
    """The real server (`campaignbot run`'s uvicorn) with a spoofed X-Forwarded-For."""
    port = free_port()
    settings = Settings(
        config=REPO / "config" / "campaign.toml",
        templates=REPO / "templates",
        database_url=database_url,
        maildir=tmp_path / "outbox",
        secret_key=SECRET,  # type: ignore[arg-type]
        public_url=f"http://127.0.0.1:{port}",
        var_dir=tmp_path / "var",
        http={"host": "127.0.0.1", "port": port},  # type: ignore[arg-type]
        admin={"host": "127.0.0.1", "port": free_port()},  # type: ignore[arg-type]
    )
    service = Service(settings, clock=FakeClock(NOW))
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            codes = await _post_many(client, [{"x-forwarded-for": f"10.0.0.{n}"} for n in range(7)])
    finally:
        await service.stop()
    assert codes == [200] * 5 + [429] * 2


async def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client(
    database_url: str, tmp_path: Path, smtp_server: Any
) -> None:
    server = await smtp_server()
    settings = Settings(
        config=REPO / "config" / "campaign.toml",
        templates=REPO / "templates",
        database_url=database_url,
        smtp=server.smtp_settings(),
        secret_key=SECRET,  # type: ignore[arg-type]
        public_url=BASE,
        var_dir=tmp_path / "var",
        http=HTTPSettings(trusted_proxies=["127.0.0.0/8"]),
    )
    service = Service(settings, clock=FakeClock(NOW), web=False)
    await service.db.upgrade()
    app = create_app(service.web_context(), drain_signups=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            # the client puts anything on the left; nginx appends the real address
            spoofed = [{"x-forwarded-for": f"10.9.9.{n}, 203.0.113.7"} for n in range(7)]
            assert await _post_many(c, spoofed) == [200] * 5 + [429] * 2
            # IPv6: one /64 is one client
            v6 = [{"x-forwarded-for": f"2001:db8:1:2::{n:x}"} for n in range(7)]
            assert await _post_many(c, v6) == [200] * 5 + [429] * 2
            other = await _post_many(c, [{"x-forwarded-for": "2001:db8:1:3::1"}])
            assert other == [200]
    finally:
        await service.transport.aclose()
        await service.db.dispose()


# -- 4. the same work for known and new addresses ---------------------------------------


async def test_sign_up_runs_the_same_statements_for_known_and_new_addresses(
    site: SiteFactory,
) -> None:
    s = await site(drain_signups=False)
    await s.add("active@example.org")
    left = await s.add("left@example.org")
    await s.service.store.set_status(left.id, SubscriberStatus.UNSUBSCRIBED, now=s.clock())
    await s.subscribe("pending@example.org")
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = s.service.db.engine.sync_engine
    runs = {}
    for email in (
        "new@example.org",
        "active@example.org",
        "left@example.org",
        "pending@example.org",
    ):
        token = await s.csrf_token()
        event.listen(engine, "before_cursor_execute", record)
        try:
            response = await s.client.post(
                "/subscribe", data={"csrf_token": token, "email": email, "locale": "en"}
            )
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert response.status_code == 200
        runs[email] = list(statements)
        statements.clear()
    assert len({tuple(run) for run in runs.values()}) == 1, runs
    assert [s_.split()[0] for s_ in runs["new@example.org"]] == ["INSERT"]
    assert s.smtp.messages == []  # nothing sent before the drain


async def test_a_request_survives_until_a_drain_sends_it(site: SiteFactory) -> None:
    s = await site(drain_signups=False)
    await s.subscribe("later@example.org")
    assert s.smtp.messages == []
    # the process "restarts": a new app drains what was left, without a new sign-up
    restarted = create_app(s.service.web_context())
    async with restarted.router.lifespan_context(restarted):
        await s.smtp.wait_for_messages(1)
    assert s.smtp.messages[0].rcpt_tos == ["later@example.org"]


# -- 5. GET /confirm changes nothing; confirm links work once ------------------------------


async def test_get_confirm_shows_a_button_and_changes_nothing(site: SiteFactory) -> None:
    s = await site()
    await s.subscribe("scanned@example.org")
    await s.smtp.wait_for_messages(1)
    page = await s.client.get(confirm_link(s))
    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert await s.status("scanned@example.org") is None  # a mail scanner confirms nothing
    assert (await confirm(s, confirm_link(s))).status_code == 200
    assert await s.status("scanned@example.org") is SubscriberStatus.ACTIVE


async def test_a_confirm_link_works_once_and_only_for_its_sign_up(site: SiteFactory) -> None:
    s = await site()
    await s.subscribe("replay@example.org")
    await s.smtp.wait_for_messages(1)
    first = confirm_link(s)
    assert (await confirm(s, first)).status_code == 200
    used = await s.client.post(first)
    assert used.status_code == 400
    subscriber = await s.service.store.get_by_email("replay@example.org")
    assert subscriber is not None
    await s.client.post("/unsubscribe", params={"t": sign(s, "unsubscribe", subscriber)})
    s.clock.advance(days=2)
    await s.subscribe("replay@example.org", name="Changed by attacker")
    await s.smtp.wait_for_messages(2)
    await settled(s)
    assert (await s.client.post(first)).status_code == 400
    assert (await s.client.get(first)).status_code == 400
    assert await s.status("replay@example.org") is SubscriberStatus.UNSUBSCRIBED


# -- 8. Host, redirects, headers ----------------------------------------------------------


async def test_no_trailing_slash_redirect_and_hosts_are_checked(site: SiteFactory) -> None:
    s = await site()
    forged = await s.client.get("/unsubscribe/?t=TOKEN123", headers={"host": "evil.example"})
    assert forged.status_code == 400
    assert "location" not in forged.headers
    slash = await s.client.get("/unsubscribe/?t=TOKEN123")
    assert slash.status_code == 404
    assert "location" not in slash.headers
    assert (await s.client.get("/", headers={"host": "evil.example"})).status_code == 400
    assert (await s.client.get("/", headers={"host": "TESTSERVER"})).status_code == 200
    # a load balancer asks by address
    health = await s.client.get("/healthz", headers={"host": "10.0.0.5:8080"})
    assert health.status_code == 200
    assert forged.headers["x-frame-options"] == "DENY"


async def test_a_loopback_public_url_takes_any_local_host(
    database_url: str, tmp_path: Path
) -> None:
    """Development: PUBLIC_URL http://127.0.0.1:8080 while the browser says localhost."""
    settings = Settings(
        config=REPO / "config" / "campaign.toml",
        templates=REPO / "templates",
        database_url=database_url,
        maildir=tmp_path / "outbox",
        secret_key=SECRET,  # type: ignore[arg-type]
        public_url="http://127.0.0.1:8080",
        var_dir=tmp_path / "var",
    )
    service = Service(settings, clock=FakeClock(NOW), web=False)
    await service.db.upgrade()
    app = create_app(service.web_context())
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:9") as c:
            assert (await c.get("/")).status_code == 200
    finally:
        await service.transport.aclose()
        await service.db.dispose()


async def test_a_body_too_large_gets_the_security_headers(site: SiteFactory) -> None:
    s = await site()
    token = await s.csrf_token()
    response = await s.client.post(
        "/subscribe", data={"csrf_token": token, "email": "x" * 70_000, "locale": "en"}
    )
    assert response.status_code == 413
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_an_https_public_url_gets_hsts_and_secure_cookies(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        config=REPO / "config" / "campaign.toml",
        templates=REPO / "templates",
        database_url=database_url,
        maildir=tmp_path / "outbox",
        secret_key=SECRET,  # type: ignore[arg-type]
        public_url="https://alerts.example.org",
        var_dir=tmp_path / "var",
    )
    service = Service(settings, clock=FakeClock(NOW), web=False)
    await service.db.upgrade()
    app = create_app(service.web_context())
    try:
        # TLS ends at the proxy: the app itself is reached over plain http
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://alerts.example.org"
        ) as client:
            response = await client.get("/")
    finally:
        await service.transport.aclose()
        await service.db.dispose()
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert "secure" in response.headers["set-cookie"].lower()


# -- 9. the privacy notice ------------------------------------------------------------------


async def test_the_privacy_notice_is_linked_and_localized(site: SiteFactory) -> None:
    s = await site()
    home = await s.client.get("/?lang=fi")
    assert 'href="/privacy?lang=fi"' in home.text
    page = await s.client.get("/privacy?lang=fi")
    assert page.status_code == 200
    assert "<h1>Tietosuojaseloste</h1>" in page.text
    assert "alerts@example.org" in page.text  # whom to ask
    english = await s.client.get("/privacy", headers={"accept-language": "en"})
    assert "7 days" in english.text
    assert "unsubscribe" in english.text.lower()
