"""The running service reads the bounce mailbox (BOUNCES__MAILDIR) and reports how it went."""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from campaignbot.service.runtime import Service
from campaignbot.settings import BounceSettings, Settings
from campaignbot.subscribers.model import SubscriberInput, SubscriberStatus
from tests.bounce_samples import dsn
from tests.campaign_files import write_campaign
from tests.clock import FakeClock
from tests.fixtures.smtp import SMTPServer

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


async def until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait for the service's own task (it runs on the real clock) to get somewhere."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the task exposes no event to wait on
            await asyncio.sleep(0.05)


async def test_the_service_reads_the_bounce_mailbox_and_suppresses(
    database_url: str, smtp_server: object, tmp_path: Path
) -> None:
    server: SMTPServer = await smtp_server()  # type: ignore[operator]
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    settings = Settings(
        config=write_campaign(tmp_path / "campaign.toml"),
        templates=REPO / "templates",
        database_url=database_url,
        smtp=server.smtp_settings(),
        secret_key="test-secret-0123456789abcdef0123456789",  # type: ignore[arg-type]
        var_dir=tmp_path / "var",
        bounce_address="bounces@bounce.example.com",
        bounces=BounceSettings(maildir=tmp_path / "bounces", hard_limit=1, interval_s=0.2),
    )
    service = Service(settings, clock=FakeClock(NOW), web=False, watch=False)
    await service.db.upgrade()
    entry = SubscriberInput.create("dead@example.com", locale="en", timezone="UTC")
    await service.store.add(entry, now=NOW, source="test")
    await service.start()
    try:
        await until(lambda: service.bounces.last_run_at is not None)
        assert service.bounces.state() == {
            "ok": True,
            "last_run_at": NOW.isoformat(),
            "last_error": None,
            "last_messages": 0,
        }
        # a hard bounce for the address arrives while the service runs
        box.add(
            dsn(
                "bounces@bounce.example.com",
                [("dead@example.com", "failed", "5.1.1", "smtp; 550 5.1.1 no such user")],
            )
        )
        await until(
            lambda: (
                service.bounces.last_summary is not None
                and service.bounces.last_summary.messages == 1
            )
        )
        subscriber = await service.store.get_by_email("dead@example.com")
        assert subscriber is not None and subscriber.status is SubscriberStatus.BOUNCED
        _, health = await service.health.report()
        assert health["bounce_mailbox"]["ok"] is True
    finally:
        await service.stop()
