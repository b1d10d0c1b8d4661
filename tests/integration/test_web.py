"""The web app against a real Service: real database (SQLite and PostgreSQL), real SMTP
server (aiosmtpd), the shipped config and templates. Requests go through httpx's ASGI
transport with the app's lifespan running."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import text
from starlette.applications import Starlette

from campaignbot.campaign.planning import alerts_for_event, plan_alerts
from campaignbot.email.tokens import LinkSigner
from campaignbot.service.runtime import Service
from campaignbot.settings import BounceSettings, Settings
from campaignbot.subscribers.model import Subscriber, SubscriberInput, SubscriberStatus
from campaignbot.subscribers.store import audience_clause
from campaignbot.web.admin import create_admin_app
from campaignbot.web.app import create_app
from tests.clock import FakeClock
from tests.fixtures.smtp import SMTPServer

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-for-web-links-0123456789"
BASE = "http://testserver"
ADMIN = "http://127.0.0.1:8081"
#: before the upcoming events of the shipped config (MSP-22 on 2026-12-07, 2027 elections)
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@dataclass
class Site:
    """One running app: its service, an HTTP client, the SMTP server it mails to."""

    service: Service
    app: Starlette
    client: httpx.AsyncClient
    smtp: SMTPServer
    clock: FakeClock
    #: the admin listener's app (health details, metrics)
    admin: httpx.AsyncClient

    async def csrf_token(self, path: str = "/") -> str:
        response = await self.client.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        assert match, response.text
        return match.group(1)

    async def subscribe(self, email: str, **fields: Any) -> httpx.Response:
        data = {"csrf_token": await self.csrf_token(), "email": email, "locale": "en"}
        return await self.client.post("/subscribe", data={**data, **fields})

    async def add(self, email: str, *, locale: str = "en", **fields: Any) -> Subscriber:
        entry = SubscriberInput.create(
            email, locale=locale, timezone="Europe/Helsinki", name="Test", **fields
        )
        return await self.service.store.add(entry, now=self.clock(), source="test")

    def link(self, purpose: str, subscriber: Subscriber) -> str:
        token = self.service.signer.sign(purpose, subscriber.id, subscriber.link_nonce)
        return f"/{purpose}?t={token}"

    async def pending(self, email: str) -> bool:
        """Whether a web sign-up for `email` waits for its confirmation."""
        async with self.service.db.engine.connect() as conn:
            query = text(
                "SELECT count(*) FROM signups WHERE email_key = :k AND confirmed_at IS NULL"
            )
            return bool((await conn.execute(query, {"k": email.lower()})).scalar())

    async def confirm(self, link: str) -> httpx.Response:
        """Follow a confirm link as a person does: open the page, press the button."""
        page = await self.client.get(link)
        assert page.status_code == 200, page.text
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action, page.text
        return await self.client.post(action.group(1).replace("&amp;", "&"))

    async def status(self, email: str) -> SubscriberStatus | None:
        subscriber = await self.service.store.get_by_email(email)
        return subscriber.status if subscriber else None


SiteFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
async def site(
    database_url: str, smtp_server: Callable[..., Awaitable[SMTPServer]], tmp_path: Path
) -> AsyncIterator[SiteFactory]:
    """Factory: `await site(**create_app options)`; everything is closed afterwards."""
    stack: list[Callable[[], Awaitable[None]]] = []

    async def make(*, settings_extra: dict[str, Any] | None = None, **options: Any) -> Site:
        server = await smtp_server()
        settings = Settings(
            **(settings_extra or {}),
            config=REPO / "config" / "campaign.toml",
            templates=REPO / "templates",
            database_url=database_url,
            smtp=server.smtp_settings(),
            secret_key=SECRET,
            public_url=BASE,
            var_dir=tmp_path / "var",
        )
        clock = FakeClock(NOW)
        service = Service(settings, clock=clock, web=False)
        await service.db.upgrade()
        app = create_app(service.web_context(), **options)
        admin_app = create_admin_app(service.admin_context())

        @asynccontextmanager
        async def running() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                admin_transport = httpx.ASGITransport(app=admin_app)
                async with (
                    httpx.AsyncClient(transport=transport, base_url=BASE) as client,
                    httpx.AsyncClient(transport=admin_transport, base_url=ADMIN) as admin,
                ):
                    yield client, admin

        context = running()
        client, admin = await context.__aenter__()

        async def close() -> None:
            await context.__aexit__(None, None, None)
            service.scheduler.shutdown()
            await service.transport.aclose()
            await service.db.dispose()

        stack.append(close)
        return Site(service, app, client, server, clock, admin)

    yield make
    for close in reversed(stack):
        await close()


def confirm_link(site: Site, index: int = -1) -> str:
    message = site.smtp.messages[index].message
    body = message.get_body(("plain",))
    assert body is not None
    match = re.search(re.escape(BASE) + r"(/confirm\?t=[\w.\-]+)", body.get_content())
    assert match, body.get_content()
    return match.group(1)


# -- home page ---------------------------------------------------------------------


async def test_home_lists_upcoming_events_in_the_visitors_language(site: SiteFactory) -> None:
    s = await site()
    response = await s.client.get("/", headers={"accept-language": "de-DE, fi;q=0.8, en;q=0.5"})
    assert response.status_code == 200
    html = response.text
    assert '<html lang="fi">' in html
    assert "Ottawan sopimuksen sopimusvaltioiden 22. kokous alkaa Genevessä" in html
    assert "maanantai 7. joulukuuta 2026" in html  # Babel, Finnish
    assert "Liettuan ero" not in html  # 2025: already happened
    assert "/events.ics?event=msp-22&amp;lang=fi" in html
    assert 'type="checkbox" id="countries-FI" name="countries" value="FI"' in html
    assert 'name="topics" value="mine-ban-treaty"' in html
    assert 'name="csrf_token"' in html
    assert "campaignbot_csrf=" in response.headers["set-cookie"]
    # no JavaScript, tokens never leak through Referer, no sniffing
    assert "<script" not in html
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("query", "accept", "lang", "title"),
    [
        ("?lang=pl", "fi", "pl", "w Genewie rozpoczyna się 22. Spotkanie"),
        ("?lang=de", "", "en", "Twenty-Second Meeting of the States Parties"),
        ("", "pl-PL,pl;q=0.9", "pl", "w Genewie rozpoczyna się 22. Spotkanie"),
        ("", "xx, *;q=0.1", "en", "Twenty-Second Meeting of the States Parties"),
    ],
    ids=["query-wins", "unshipped-falls-back", "region-tag", "nothing-matches"],
)
async def test_home_language_choice(
    site: SiteFactory, query: str, accept: str, lang: str, title: str
) -> None:
    s = await site()
    response = await s.client.get(f"/{query}", headers={"accept-language": accept})
    assert f'<html lang="{lang}">' in response.text
    assert title in response.text


async def test_stylesheet_and_not_found_page(site: SiteFactory) -> None:
    s = await site()
    css = await s.client.get("/static/style.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    missing = await s.client.get("/nowhere?lang=fi")
    assert missing.status_code == 404
    assert "Sivua ei löydy" in missing.text
    assert 'href="/?lang=en"' in missing.text  # language links lead to our pages only


# -- subscribe and confirm ---------------------------------------------------------


async def test_subscribe_sends_confirmation_and_the_link_activates(site: SiteFactory) -> None:
    s = await site()
    response = await s.subscribe(
        "Reader@Example.org", name="Rea Der", locale="fi", countries="FI", topics="elections"
    )
    assert response.status_code == 200
    assert "Tarkista sähköpostisi" in response.text

    await s.smtp.wait_for_messages(1)
    assert await s.pending("reader@example.org")
    assert await s.status("reader@example.org") is None  # not a subscriber before confirming
    received = s.smtp.messages[0]
    assert received.rcpt_tos == ["Reader@example.org"]  # domain normalized
    assert received.mail_from == "alerts@example.org"

    confirmed = await s.confirm(confirm_link(s))
    assert confirmed.status_code == 200
    assert '<html lang="fi">' in confirmed.text  # the subscriber's language
    assert "Tilauksesi on voimassa" in confirmed.text
    subscriber = await s.service.store.get_by_email("reader@example.org")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.consent_at == NOW
    assert subscriber.countries == {"FI"}
    assert subscriber.topics == {"elections"}
    assert subscriber.timezone == "Europe/Helsinki"
    assert not subscriber.follows_all
    assert subscriber.name == "Rea Der"  # stored, only never put into the confirmation mail
    # the link is used up: following it again changes nothing
    again = await s.client.get(confirm_link(s))
    assert again.status_code == 400
    assert "already been used" in again.text


async def test_nothing_ticked_means_everything(site: SiteFactory) -> None:
    s = await site()
    await s.subscribe("all@example.org")
    await s.smtp.wait_for_messages(1)
    await s.confirm(confirm_link(s))
    subscriber = await s.service.store.get_by_email("all@example.org")
    assert subscriber is not None
    assert subscriber.follows_all
    assert not subscriber.countries
    assert not subscriber.topics


async def test_the_answer_does_not_tell_whether_an_address_is_known(site: SiteFactory) -> None:
    s = await site()
    first = await s.subscribe("twice@example.org")
    second = await s.subscribe("twice@example.org")
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    await s.smtp.wait_for_messages(1)
    await asyncio.sleep(0.2)
    assert len(s.smtp.messages) == 1  # one confirmation per address per day
    assert await s.pending("twice@example.org")

    await s.confirm(confirm_link(s))
    s.clock.advance(days=2)
    active = await s.subscribe("TWICE@example.org")
    assert active.text.replace("TWICE", "twice") == first.text
    await asyncio.sleep(0.2)
    assert len(s.smtp.messages) == 1  # an active address gets no mail
    assert len(await s.service.store.list_subscribers()) == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "not-an-address"}, "email", "Enter a valid email address"),
        ({"email": ""}, "email", "Enter a valid email address"),
        ({"email": "a@example.org", "name": "x" * 201}, "name", "The name is too long"),
        ({"email": "a@example.org", "countries": "US"}, "countries", "Choose only from"),
        ({"email": "a@example.org", "topics": "cats"}, "topics", "Choose only from"),
        ({"email": "a@example.org", "locale": "de"}, "locale", "Choose only from"),
    ],
    ids=["bad-email", "no-email", "long-name", "unknown-country", "unknown-topic", "unknown-lang"],
)
async def test_invalid_sign_up_shows_the_form_again(
    site: SiteFactory, fields: dict[str, str], field: str, message: str
) -> None:
    s = await site()
    response = await s.subscribe(**fields)
    assert response.status_code == 400
    assert message in response.text
    assert 'role="alert"' in response.text
    assert f'href="#field-{field}"' in response.text
    if field == "email":
        assert 'aria-invalid="true" aria-describedby="field-email-error"' in response.text
        assert f'value="{fields["email"]}"' in response.text  # what was typed stays
    assert await s.service.store.list_subscribers() == []
    assert s.smtp.messages == []


async def test_smtp_failure_does_not_fail_the_sign_up(site: SiteFactory) -> None:
    s = await site()
    await s.smtp.stop()
    response = await s.subscribe("later@example.org")
    assert response.status_code == 200
    await asyncio.sleep(0.2)
    assert await s.pending("later@example.org")
    # the relay is back: the next drain sends the mail that is still owed
    await s.smtp.start()
    await s.app.state.web.drain()
    await s.smtp.wait_for_messages(1)


async def test_forms_without_a_valid_csrf_token_are_refused(site: SiteFactory) -> None:
    s = await site()
    data = {"email": "csrf@example.org", "locale": "en"}
    missing = await s.client.post("/subscribe", data=data)
    assert missing.status_code == 403
    assert "Please send the form again" in missing.text
    forged = await s.client.post("/subscribe", data={**data, "csrf_token": "abc.def.ghi"})
    assert forged.status_code == 403
    # a token made for another browser's cookie
    token = await s.csrf_token()
    s.client.cookies.clear()
    foreign = await s.client.post("/subscribe", data={**data, "csrf_token": token})
    assert foreign.status_code == 403
    assert await s.service.store.list_subscribers() == []


async def test_sign_ups_are_rate_limited_per_client(site: SiteFactory) -> None:
    s = await site()
    token = await s.csrf_token()
    codes = []
    for n in range(7):
        response = await s.client.post(
            "/subscribe", data={"csrf_token": token, "email": f"r{n}@example.org", "locale": "en"}
        )
        codes.append(response.status_code)
    assert codes == [200] * 5 + [429] * 2
    assert int(response.headers["retry-after"]) > 0
    await s.smtp.wait_for_messages(5)
    await asyncio.sleep(0.2)
    assert len(s.smtp.messages) == 5


async def test_confirm_rejects_bad_tokens_and_changes_nothing(site: SiteFactory) -> None:
    s = await site()
    await s.subscribe("careful@example.org")
    await s.smtp.wait_for_messages(1)
    good = confirm_link(s).split("t=", 1)[1]
    signup_id, nonce = s.service.signer.open(good, "confirm")
    tokens = {
        "forged": LinkSigner("another-secret" * 3).sign("confirm", signup_id, nonce),
        "expired": LinkSigner(SECRET, clock=lambda: time.time() - 8 * 24 * 3600).sign(
            "confirm", signup_id, nonce
        ),
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "other purpose": s.service.signer.sign("unsubscribe", signup_id, nonce),
        "empty": "",
    }
    for name, token in tokens.items():
        for method in ("GET", "POST"):
            response = await s.client.request(method, "/confirm", params={"t": token})
            assert response.status_code == 400, name
            assert "This link does not work" in response.text
            if name == "expired":
                assert "expired" in response.text
    other_nonce = s.service.signer.sign("confirm", signup_id, "someothernonce")
    assert (await s.client.post("/confirm", params={"t": other_nonce})).status_code == 400
    assert (await s.client.get("/confirm")).status_code == 400
    assert await s.pending("careful@example.org")
    assert await s.status("careful@example.org") is None


# -- unsubscribe -------------------------------------------------------------------


async def test_unsubscribe_get_shows_a_button_and_changes_nothing(site: SiteFactory) -> None:
    s = await site()
    subscriber = await s.add("keep@example.org", locale="pl")
    response = await s.client.get(s.link("unsubscribe", subscriber))
    assert response.status_code == 200
    assert '<html lang="pl">' in response.text
    assert 'method="post"' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert "keep@example.org" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert await s.status("keep@example.org") is SubscriberStatus.ACTIVE


async def test_one_click_unsubscribe_stops_pending_deliveries(site: SiteFactory) -> None:
    s = await site()
    subscriber = await s.add("leave@example.org", topics=["mine-ban-treaty"])
    event = s.service.campaign.event("msp-22")
    alert = alerts_for_event(event, s.service.campaign.campaign.send_at)[0]
    fired = await s.service.ledger.fire_alert(alert, audience_clause(event.audience), now=s.clock())
    assert fired.deliveries == 1

    # what a mail provider sends (RFC 8058): no cookie, no CSRF token
    provider = httpx.AsyncClient(transport=httpx.ASGITransport(app=s.app), base_url=BASE)
    async with provider:
        url = s.link("unsubscribe", subscriber)
        body = "List-Unsubscribe=One-Click"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        first = await provider.post(url, content=body, headers=headers)
        assert first.status_code == 200
        assert await s.status("leave@example.org") is SubscriberStatus.UNSUBSCRIBED
        # again, and as multipart/form-data: still fine, still unsubscribed
        again = await provider.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert again.status_code == 200
    assert await s.status("leave@example.org") is SubscriberStatus.UNSUBSCRIBED

    outcomes = await s.service.sender.run_until_idle()
    assert outcomes == {"skipped": 1}
    assert s.smtp.messages == []


async def test_unsubscribe_post_with_a_bad_token_changes_nothing(site: SiteFactory) -> None:
    s = await site()
    subscriber = await s.add("stay@example.org")
    good = s.service.signer.sign("unsubscribe", subscriber.id, subscriber.link_nonce)
    for token in (
        good[:-2] + "xy",
        LinkSigner("nope" * 32).sign("unsubscribe", subscriber.id, subscriber.link_nonce),
        "",
    ):
        response = await s.client.post(
            "/unsubscribe", params={"t": token}, data={"List-Unsubscribe": "One-Click"}
        )
        assert response.status_code == 400
    wrong_purpose = s.service.signer.sign("preferences", subscriber.id, subscriber.link_nonce)
    response = await s.client.post("/unsubscribe", params={"t": wrong_purpose})
    assert response.status_code == 400
    assert await s.status("stay@example.org") is SubscriberStatus.ACTIVE


async def test_confirm_page_links_to_preferences_and_unsubscribe(site: SiteFactory) -> None:
    s = await site()
    await s.subscribe("links@example.org")
    await s.smtp.wait_for_messages(1)
    page = await s.confirm(confirm_link(s))
    links = re.findall(r'href="(/(?:unsubscribe|preferences)\?[^"]+)"', page.text)
    assert len(links) == 2
    unsubscribe = next(link for link in links if link.startswith("/unsubscribe"))
    form = await s.client.get(unsubscribe.replace("&amp;", "&"))
    action = re.search(r'<form method="post" action="([^"]+)"', form.text)
    assert action
    done = await s.client.post(
        action.group(1).replace("&amp;", "&"), data={"List-Unsubscribe": "One-Click"}
    )
    assert done.status_code == 200
    assert "You&#39;re unsubscribed" in done.text
    assert await s.status("links@example.org") is SubscriberStatus.UNSUBSCRIBED


# -- preferences -------------------------------------------------------------------


async def test_preferences_can_be_changed(site: SiteFactory) -> None:
    s = await site()
    subscriber = await s.add("prefs@example.org", countries=["FI"])
    url = s.link("preferences", subscriber)
    page = await s.client.get(url)
    assert page.status_code == 200
    assert '<option value="Europe/Helsinki" selected>' in page.text
    assert 'value="FI" checked' in page.text
    token = await s.csrf_token(url)

    data = {
        "csrf_token": token,
        "locale": "pl",
        "timezone": "Europe/Warsaw",
        "countries": ["PL", "LT"],
        "topics": "elections",
    }
    saved = await s.client.post(url, data=data)
    assert saved.status_code == 200
    assert "Ustawienia zostały zapisane." in saved.text
    updated = await s.service.store.get(subscriber.id)
    assert updated is not None
    assert updated.locale == "pl"
    assert updated.timezone == "Europe/Warsaw"
    assert updated.countries == {"PL", "LT"}
    assert updated.topics == {"elections"}
    assert not updated.follows_all

    # ticking nothing follows everything
    await s.client.post(url, data={"csrf_token": token, "locale": "en", "timezone": "UTC"})
    everything = await s.service.store.get(subscriber.id)
    assert everything is not None
    assert everything.follows_all


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, 400),
        ({"timezone": "localtime"}, 400),
        ({"locale": "xx"}, 400),
        ({"countries": "ZZ"}, 400),
        ({"csrf_token": ""}, 403),
    ],
    ids=["unknown-zone", "not-iana", "unknown-lang", "unknown-country", "no-csrf"],
)
async def test_invalid_preferences_change_nothing(
    site: SiteFactory, change: dict[str, str], status: int
) -> None:
    s = await site()
    subscriber = await s.add("same@example.org")
    url = s.link("preferences", subscriber)
    data = {"csrf_token": await s.csrf_token(url), "locale": "fi", "timezone": "Europe/Warsaw"}
    response = await s.client.post(url, data={**data, **change})
    assert response.status_code == status
    assert await s.service.store.get(subscriber.id) == subscriber


async def test_preferences_with_a_bad_token_are_refused(site: SiteFactory) -> None:
    s = await site()
    subscriber = await s.add("p@example.org")
    token = s.service.signer.sign("preferences", subscriber.id, subscriber.link_nonce)
    assert (await s.client.get("/preferences", params={"t": token + "x"})).status_code == 400
    response = await s.client.post(
        "/preferences", params={"t": token[:-1]}, data={"locale": "fi", "timezone": "UTC"}
    )
    assert response.status_code == 400
    assert await s.service.store.get(subscriber.id) == subscriber


# -- calendar ----------------------------------------------------------------------


async def test_events_ics_is_a_calendar_of_all_events(site: SiteFactory) -> None:
    s = await site()
    campaign = s.service.campaign
    send_at = campaign.campaign.send_at
    await s.service.events.record(campaign.events, send_at=send_at, now=s.clock())
    moved = [
        e.model_copy(update={"when": datetime(2026, 12, 8, 10, 0)}) if e.id == "msp-22" else e
        for e in campaign.events
    ]
    await s.service.events.record(moved, send_at=send_at, now=s.clock())

    response = await s.client.get("/events.ics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    events = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
    assert set(events) == {f"{e.id}@example.org" for e in campaign.events}
    assert int(events["msp-22@example.org"]["SEQUENCE"]) == 1
    assert int(events["fi-final-vote@example.org"]["SEQUENCE"]) == 0
    assert str(events["msp-22@example.org"]["SUMMARY"]).startswith("Mine Ban Treaty:")
    # the same UIDs on every request
    again = Calendar.from_ical((await s.client.get("/events.ics")).content)
    assert {str(e["UID"]) for e in again.walk("VEVENT")} == set(events)


async def test_events_ics_language_and_single_event(site: SiteFactory) -> None:
    s = await site()
    polish = await s.client.get("/events.ics", params={"lang": "pl"})
    titles = {str(e["SUMMARY"]) for e in Calendar.from_ical(polish.content).walk("VEVENT")}
    assert "Sejm głosuje nad ustawą o wypowiedzeniu konwencji ottawskiej" in titles

    one = await s.client.get("/events.ics", params={"event": "msp-22", "lang": "fi"})
    events = Calendar.from_ical(one.content).walk("VEVENT")
    assert [str(e["SUMMARY"]) for e in events] == [
        "Ottawan sopimuksen sopimusvaltioiden 22. kokous alkaa Genevessä"
    ]
    assert (await s.client.get("/events.ics", params={"event": "nope"})).status_code == 404
    # the feed is public: a token from an older email is ignored
    old = await s.client.get("/events.ics", params={"t": "old.calendar.token"})
    assert old.status_code == 200


# -- operations --------------------------------------------------------------------


# -- operations: the admin listener ---------------------------------------------------


async def test_healthz_reports_each_part(site: SiteFactory) -> None:
    s = await site()
    s.service.health.cache_s = 0
    scheduler_off = await s.admin.get("/healthz")
    assert scheduler_off.status_code == 503
    assert scheduler_off.json()["scheduler"] == {"ok": False, "running": False}

    s.service.scheduler.sync(plan_alerts(s.service.campaign, since=s.clock()), now=s.clock())
    s.service.scheduler.start()
    healthy = await s.admin.get("/healthz")
    assert healthy.status_code == 200
    body = healthy.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "error": None}
    assert body["transport"]["ok"] is True
    assert body["next_alert"]["alert"] == "msp-22:7d"
    assert body["next_alert"]["due"] == "2026-11-30T09:00:00+00:00"

    await s.smtp.stop()
    down = await s.admin.get("/healthz")
    assert down.status_code == 503
    assert down.json()["transport"]["ok"] is False
    assert str(s.smtp.port) in down.json()["transport"]["error"]
    assert down.json()["transport"]["relay"]["status"] == "down"  # RelayHealth saw it

    await s.smtp.start()
    assert (await s.admin.get("/healthz")).status_code == 200


async def test_healthz_caches_the_transport_check(site: SiteFactory) -> None:
    s = await site()  # default: 30 s
    s.service.scheduler.start()
    assert (await s.admin.get("/healthz")).status_code == 200
    connections = s.smtp.connections
    await s.smtp.stop()
    assert (await s.admin.get("/healthz")).status_code == 200  # the cached answer
    assert s.smtp.connections == connections


async def test_metrics_exposes_the_ledger(site: SiteFactory) -> None:
    s = await site()
    await s.add("m@example.org")
    event = s.service.campaign.event("msp-22")
    alert = alerts_for_event(event, s.service.campaign.campaign.send_at)[0]
    await s.service.ledger.fire_alert(alert, audience_clause(event.audience), now=s.clock())
    before = (await s.admin.get("/metrics")).text
    assert 'campaignbot_deliveries{status="pending"} 1.0' in before
    assert "campaignbot_queue_depth 1.0" in before

    assert await s.service.sender.run_until_idle() == {"sent": 1}
    s.clock.advance(seconds=5)  # past the metrics cache
    response = await s.admin.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "campaignbot_deliveries",
        "campaignbot_queue_depth",
        "campaignbot_send_latency_seconds_bucket",
        "campaignbot_alerts",
        "campaignbot_uncertain_deliveries",
        "campaignbot_subscribers",
        "campaignbot_sender_outcomes_total",
    ):
        assert f"\n{name}" in text, name
    assert 'campaignbot_deliveries{status="sent"} 1.0' in text
    assert "campaignbot_queue_depth 0.0" in text
    assert "campaignbot_send_latency_seconds_count 1.0" in text
    assert 'campaignbot_alerts{status="fired"} 1.0' in text
    assert "campaignbot_uncertain_deliveries 0.0" in text
    assert "campaignbot_relay_up 1.0" in text  # from the real send, no probe
    assert "campaignbot_relay_consecutive_failures 0.0" in text
    # a second scrape does not count the same send twice
    assert "campaignbot_send_latency_seconds_count 1.0" in (await s.admin.get("/metrics")).text

    s.service.scheduler.sync(plan_alerts(s.service.campaign, since=s.clock()), now=s.clock())
    s.clock.advance(seconds=5)
    text = (await s.admin.get("/metrics")).text
    assert "campaignbot_next_alert_seconds" in text


async def test_two_apps_have_separate_registries(site: SiteFactory) -> None:
    first, second = await site(), await site()
    assert first.service.metrics.registry is not second.service.metrics.registry
    assert (await first.admin.get("/metrics")).status_code == 200
    assert (await second.admin.get("/metrics")).status_code == 200


async def test_metrics_are_cached_for_a_few_seconds(site: SiteFactory) -> None:
    s = await site()
    assert 'campaignbot_subscribers{status="active"} 0.0' in (await s.admin.get("/metrics")).text
    await s.add("cached@example.org")
    cached = (await s.admin.get("/metrics")).text
    assert 'campaignbot_subscribers{status="active"} 0.0' in cached  # no new queries
    s.clock.advance(seconds=5)
    fresh = (await s.admin.get("/metrics")).text
    assert 'campaignbot_subscribers{status="active"} 1.0' in fresh


async def test_the_public_port_has_no_admin_routes(site: SiteFactory) -> None:
    s = await site()
    for path in ("/metrics", "/livez", "/readyz"):
        assert (await s.client.get(path)).status_code == 404, path
    public = await s.client.get("/healthz")
    assert public.status_code == 200
    assert public.json() == {"status": "ok"}  # a status word, no relay details


async def test_admin_probes(site: SiteFactory) -> None:
    s = await site()
    assert (await s.admin.get("/livez")).json() == {"status": "ok"}
    ready = await s.admin.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"]["ok"] is True
    await s.smtp.stop()  # the relay is reported, never a reason to take the pages offline
    assert (await s.admin.get("/readyz")).status_code == 200
    assert (await s.client.get("/healthz")).status_code == 200


async def test_the_service_mounts_the_configured_relay_webhooks(site: SiteFactory) -> None:
    s = await site(
        settings_extra={
            "bounces": BounceSettings(
                postmark_username="hook",
                postmark_password="s3cret-postmark",  # type: ignore[arg-type]
            )
        }
    )
    await s.add("gone@example.org")
    payload = {
        "RecordType": "Bounce",
        "ID": 42,
        "Type": "HardBounce",
        "Email": "gone@example.org",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    }
    forged = await s.client.post("/hooks/postmark", json=payload, auth=("hook", "guess"))
    assert forged.status_code == 401
    assert await s.status("gone@example.org") is SubscriberStatus.ACTIVE
    good = await s.client.post("/hooks/postmark", json=payload, auth=("hook", "s3cret-postmark"))
    assert good.status_code == 200, good.text
    assert good.json()["received"] == 1
    # not configured: no route at all
    assert (await s.client.post("/hooks/mailgun", json={})).status_code == 404


async def test_a_relay_batch_may_be_larger_than_a_form(site: SiteFactory) -> None:
    hook = BounceSettings(postmark_username="hook", postmark_password="pw")  # type: ignore[arg-type]
    s = await site(settings_extra={"bounces": hook})
    big = b"x" * (200 * 1024)  # over the forms' 64 KiB, under the webhooks' own 1 MiB
    refused = await s.client.post("/hooks/postmark", content=big, auth=("hook", "wrong"))
    assert refused.status_code == 401  # read and refused on its signature, not its size
    form = await s.client.post("/subscribe", content=big)
    assert form.status_code == 413
