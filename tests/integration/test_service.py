"""The service in-process: firing, catch-up, change notices and reloads, with a fake clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date

from campaignbot.service.runtime import Service
from campaignbot.settings import Settings
from campaignbot.subscribers.model import SubscriberInput
from tests.campaign_files import event_toml, write_campaign
from tests.clock import FakeClock

REPO = Path(__file__).resolve().parents[2]

ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_service(
    tmp_path: Path, database_url: str, smtp_server: Any, clock: FakeClock
) -> AsyncIterator[ServiceFactory]:
    """Start a Service (no web) on a real database and a real SMTP server."""
    started: list[Service] = []
    server = await smtp_server()

    async def make(
        *events: str, catch_up: str = "6h", subscribers: tuple[tuple[str, str, str], ...] = ()
    ) -> Service:
        """`subscribers` exist before the service starts (as after downtime)."""
        config = write_campaign(tmp_path / "campaign.toml", *events, catch_up=catch_up)
        settings = Settings(
            config=config,
            templates=REPO / "templates",
            database_url=database_url,
            smtp=server.smtp_settings(max_connections=4),
            secret_key="test-secret-0123456789abcdef0123456789",  # type: ignore[arg-type]
            var_dir=tmp_path / "var",
        )
        # no file watcher: the tests call reload() themselves (e2e tests cover watching)
        service = Service(settings, clock=clock, web=False, watch=False)
        service.test_server = server  # type: ignore[attr-defined]
        await service.db.upgrade()
        await add_subscribers(service, clock, *subscribers)
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


async def add_subscribers(service: Service, clock: FakeClock, *specs: tuple[str, str, str]) -> None:
    for email, locale, country in specs:
        await service.store.add(
            SubscriberInput.create(
                email, locale=locale, timezone="Europe/Helsinki", countries=[country]
            ),
            now=clock(),
            source="test",
        )


async def settle(service: Service, timeout_s: float = 10) -> None:
    """Wait until the running sender has no due delivery left (retries excepted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        summary = await service.ledger.status_summary(now=service.clock())
        if all(a.pending == 0 for a in summary.alerts):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries still pending after {timeout_s} s")


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def recipients(service: Service) -> list[str]:
    server = service.test_server  # type: ignore[attr-defined]
    return sorted(r for m in server.messages for r in m.rcpt_tos)


async def test_a_due_reminder_goes_to_each_matching_subscriber_once(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    vote = clock() + timedelta(days=1, hours=1)
    service = await make_service(event_toml("fi-vote", vote, countries=["FI"]))
    await add_subscribers(
        service,
        clock,
        ("aino@example.fi", "fi", "FI"),
        ("ada@example.org", "en", "FI"),
        ("jan@example.pl", "pl", "PL"),
    )
    clock.advance(hours=1, minutes=1)  # the "1d" reminder is now due
    await service.fire_due()
    await service.test_server.wait_for_messages(2)  # type: ignore[attr-defined]
    await service.fire_due()  # firing again adds nothing
    await settle(service)
    assert recipients(service) == ["ada@example.org", "aino@example.fi"]
    subjects = {m.message["To"]: m.message["Subject"] for m in service.test_server.messages}  # type: ignore[attr-defined]
    assert any("Äänestys" in s for s in subjects.values())


async def test_a_reminder_missed_beyond_catch_up_is_skipped(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    # The service was "down": the 1d reminder fell due 7 hours ago, catch_up is 6h.
    vote = clock() + timedelta(days=1) - timedelta(hours=7)
    service = await make_service(
        event_toml("fi-vote", vote), catch_up="6h", subscribers=(("ada@example.org", "en", "FI"),)
    )
    await settle(service)
    summary = await service.ledger.status_summary(now=clock())
    (row,) = [a for a in summary.alerts if a.key == "fi-vote:1d"]
    assert row.status == "skipped"
    assert recipients(service) == []


async def test_a_reminder_missed_within_catch_up_goes_out_late(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    vote = clock() + timedelta(days=1) - timedelta(hours=2)
    service = await make_service(
        event_toml("fi-vote", vote, reminders=["1d"]),
        subscribers=(("ada@example.org", "en", "FI"),),
    )
    await settle(service)
    assert recipients(service) == ["ada@example.org"]


async def test_moving_an_event_sends_one_notice_to_those_already_alerted(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    vote = clock() + timedelta(days=1, hours=1)
    service = await make_service(event_toml("fi-vote", vote))
    await add_subscribers(service, clock, ("ada@example.org", "en", "FI"))
    clock.advance(hours=2)
    await service.fire_due()
    await settle(service)
    assert len(service.test_server.messages) == 1  # type: ignore[attr-defined]

    moved = vote + timedelta(days=7)
    write_campaign(tmp_path / "campaign.toml", event_toml("fi-vote", moved))
    assert await service.reload("test")
    await settle(service)
    assert await service.reload("test again")  # no change, no second notice
    await settle(service)
    messages = service.test_server.messages  # type: ignore[attr-defined]
    assert len(messages) == 2
    notice = messages[1].message
    assert notice["To"] == "ada@example.org"
    previously = [line for line in plain_text(notice).splitlines() if "Previously:" in line]
    old = vote.astimezone(ZoneInfo("Europe/Helsinki"))
    assert len(previously) == 1, previously
    assert format_date(old, format="long", locale="en_GB") in previously[0], previously
    # future reminders follow the new date; the 1d reminder, already sent, never repeats
    assert service.scheduler.jobs()["fi-vote:0"] == moved
    clock.set(moved - timedelta(hours=23))
    await service.fire_due()
    await settle(service)
    assert len(messages) == 2


async def test_cancelling_an_event_notifies_and_stops_its_reminders(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    vote = clock() + timedelta(days=1, hours=1)
    service = await make_service(event_toml("fi-vote", vote))
    await add_subscribers(service, clock, ("ada@example.org", "en", "FI"))
    clock.advance(hours=2)
    await service.fire_due()
    await settle(service)
    write_campaign(tmp_path / "campaign.toml", event_toml("fi-vote", vote, status="cancelled"))
    assert await service.reload("test")
    clock.advance(days=1)  # the "0" reminder would be due now
    await service.fire_due()
    await settle(service)
    messages = service.test_server.messages  # type: ignore[attr-defined]
    assert len(messages) == 2  # the alert and the cancellation notice, nothing more
    assert service.scheduler.next_due() is None


async def test_deleting_an_alerted_event_sends_a_cancellation_from_its_snapshot(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    vote = clock() + timedelta(days=1, hours=1)
    later = clock() + timedelta(days=30)
    service = await make_service(event_toml("fi-vote", vote), event_toml("pl-vote", later))
    await add_subscribers(service, clock, ("ada@example.org", "fi", "FI"))
    clock.advance(hours=2)
    await service.fire_due()
    await settle(service)
    write_campaign(tmp_path / "campaign.toml", event_toml("pl-vote", later))
    assert await service.reload("test")
    await settle(service)
    clock.advance(days=1)  # fi-vote's "0" reminder would be due now
    await service.fire_due()
    await settle(service)
    messages = service.test_server.messages  # type: ignore[attr-defined]
    assert len(messages) == 2  # the alert and the cancellation notice, nothing more
    notice = messages[1].message
    assert "Äänestys fi-vote" in notice["Subject"]  # the title, from the snapshot
    calendar = next(p for p in notice.walk() if p.get_content_type() == "text/calendar")
    assert b"STATUS:CANCELLED" in calendar.get_payload(decode=True)
    jobs = service.scheduler.jobs()
    assert jobs and not any(key.startswith("fi-vote:") for key in jobs), jobs


async def test_an_invalid_edit_keeps_the_running_schedule(
    make_service: ServiceFactory,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    vote = clock() + timedelta(days=3)
    service = await make_service(event_toml("fi-vote", vote))
    before = service.scheduler.next_due()
    (tmp_path / "campaign.toml").write_text(
        (tmp_path / "campaign.toml").read_text().replace("Europe/Helsinki", "Europe/Helsenki")
    )
    with caplog.at_level(logging.ERROR):
        assert not await service.reload("test")
    assert "unknown time zone 'Europe/Helsenki'" in caplog.text
    assert "running schedule is unchanged" in caplog.text
    assert service.scheduler.next_due() == before


async def test_a_new_event_is_scheduled_on_reload(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    vote = clock() + timedelta(days=3)
    service = await make_service(event_toml("fi-vote", vote))
    soon = clock() + timedelta(days=2)
    write_campaign(
        tmp_path / "campaign.toml", event_toml("fi-vote", vote), event_toml("pl-vote", soon)
    )
    assert await service.reload("test")
    nxt = service.scheduler.next_due()
    assert nxt is not None
    assert nxt[0] == "pl-vote:1d"
    assert nxt[1] == soon - timedelta(days=1)
