"""The dashboard's test site: a Service with a dashboard user, its admin listener and
public app through httpx, a real SMTP server (shared by the test_dashboard* modules)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

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


DeskFactory = Callable[..., Awaitable[Desk]]


@asynccontextmanager
async def desks(
    database_url: str, smtp_server: Callable[..., Awaitable[SMTPServer]], tmp_path: Path
) -> AsyncIterator[DeskFactory]:
    """Factory: a Service with one dashboard user `alice`; closed afterwards."""
    closers: list[Callable[[], Awaitable[None]]] = []

    async def make(
        config: Path = REPO / "config" / "campaign.toml", templates: Path = REPO / "templates"
    ) -> Desk:
        server = await smtp_server()
        users_file = tmp_path / "var" / "admin-users.toml"
        settings = Settings(
            config=config,
            templates=templates,
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

    try:
        yield make
    finally:
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
