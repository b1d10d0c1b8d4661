"""Delivery promises under downtime, retries and edits, with the service in-process and a fake clock.

Real database (SQLite and PostgreSQL) and a real SMTP server; the clock is moved by
hand. The same scenarios run with `campaignbot run` as a process in
tests/test_guarantees_e2e.py.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from campaignbot.service.runtime import Service
from campaignbot.storage.states import DeliveryStatus
from tests.campaign_files import event_toml, write_campaign
from tests.clock import FakeClock
from tests.integration.test_service import ServiceFactory, add_subscribers, recipients, settle

# the fixtures `clock` and `make_service` are test_service's (see tests/integration/conftest.py)

ADA = ("ada@example.org", "en", "FI")


def minute(clock: FakeClock) -> datetime:
    """The clock's current minute, so a test can place events on minute boundaries."""
    return clock().replace(second=0)


async def statuses(service: Service) -> dict[str, tuple[str, int, int, int]]:
    """alert key -> (alert status, sent, skipped, stale)."""
    summary = await service.ledger.status_summary(now=service.clock())
    return {a.key: (a.status, a.sent, a.skipped, getattr(a, "stale", -1)) for a in summary.alerts}


async def wait_for(service: Service, status: DeliveryStatus, timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        counts = await service.ledger.counts(now=service.clock())
        if counts.deliveries.get(status, 0):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {status} delivery after {timeout_s} s")


async def test_downtime_across_the_start_sends_no_missed_reminder(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    # the service comes back 30 s after the event started: '1m' and '0' were missed
    vote = clock() - timedelta(seconds=30)
    service = await make_service(
        event_toml("vote", vote, reminders=["1m", "0"]), subscribers=(ADA,)
    )
    await settle(service)
    assert recipients(service) == []
    assert await statuses(service) == {
        "vote:1m": ("skipped", 0, 0, 0),
        "vote:0": ("skipped", 0, 0, 0),
    }


async def test_after_an_outage_only_the_latest_missed_reminder_goes_out(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    vote = clock() + timedelta(hours=1)
    service = await make_service(
        event_toml("vote", vote, reminders=["7d", "1d", "2h"]),
        catch_up="3d",
        subscribers=(ADA,),
    )
    await settle(service)
    assert recipients(service) == ["ada@example.org"]
    assert (await statuses(service))["vote:7d"][0] == "skipped"
    assert (await statuses(service))["vote:1d"][0] == "skipped"
    # worded from the real lead when it went out: one hour, not two
    (message,) = service.test_server.messages  # type: ignore[attr-defined]
    assert message.message["Subject"].startswith("In an hour"), message.message["Subject"]


async def test_a_retry_that_crosses_the_start_is_skipped_as_stale(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    vote = minute(clock) + timedelta(hours=2, minutes=10)
    service = await make_service(event_toml("vote", vote, reminders=["2h"]), subscribers=(ADA,))
    server = service.test_server  # type: ignore[attr-defined]
    server.fail("RCPT", "451 4.3.0 try later")
    clock.set(vote - timedelta(hours=2) + timedelta(seconds=1))
    await service.fire_due()
    await wait_for(service, DeliveryStatus.RETRY)
    server.faults.clear()
    clock.set(vote + timedelta(seconds=1))  # the retry would now be due, after the start
    await service.fire_due()  # a wake-up: the same tick() as every other
    await settle(service)
    await asyncio.sleep(0.3)  # a sender poll would have sent it meanwhile
    assert recipients(service) == []
    assert await statuses(service) == {"vote:2h": ("fired", 0, 1, 1)}
    assert (await service.ledger.counts(now=clock())).stale == 1
    assert b"campaignbot_stale_deliveries 1.0" in await service.metrics.render()


async def test_the_zero_reminder_finishes_first_attempts_but_never_retries_after_the_start(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    vote = minute(clock) + timedelta(minutes=5)
    bea = ("bea@example.org", "en", "FI")
    service = await make_service(event_toml("vote", vote, reminders=["0"]), subscribers=(ADA, bea))
    server = service.test_server  # type: ignore[attr-defined]
    server.fail("RCPT", "451 4.3.0 try later", recipient="bea@example.org")
    clock.set(vote + timedelta(seconds=2))
    await service.fire_due()
    await wait_for(service, DeliveryStatus.RETRY)
    server.faults.clear()
    clock.advance(minutes=1)  # bea's retry is due: the event has started
    await service.fire_due()  # a wake-up: the same tick() as every other
    await settle(service)
    await asyncio.sleep(0.3)
    assert recipients(service) == ["ada@example.org"]
    assert await statuses(service) == {"vote:0": ("fired", 1, 1, 1)}


async def test_a_1d_reminder_delayed_until_3_hours_before_says_in_3_hours(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    vote = minute(clock) + timedelta(days=1, minutes=10)
    service = await make_service(event_toml("vote", vote, reminders=["1d"]), subscribers=(ADA,))
    server = service.test_server  # type: ignore[attr-defined]
    server.fail("RCPT", "451 4.3.0 try later")
    clock.set(vote - timedelta(days=1) + timedelta(seconds=1))
    await service.fire_due()
    await wait_for(service, DeliveryStatus.RETRY)
    server.faults.clear()
    clock.set(vote - timedelta(hours=3))
    await service.fire_due()  # a wake-up: the same tick() as every other
    service.sender.wake()
    await server.wait_for_messages(1)
    subject = server.messages[0].message["Subject"]
    assert subject.startswith("In 3 hours"), subject


async def test_a_correction_keeping_the_displayed_time_sends_no_notice_and_90_s_sends_one(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    vote = minute(clock) + timedelta(days=1, hours=1)
    service = await make_service(event_toml("vote", vote, reminders=["1d", "0"]))
    await add_subscribers(service, clock, ADA)
    clock.advance(hours=1, minutes=1)
    await service.fire_due()
    await settle(service)
    messages = service.test_server.messages  # type: ignore[attr-defined]
    assert len(messages) == 1
    # 30 s later: the displayed time (HH:MM) stays the same, no notice
    write_campaign(
        tmp_path / "campaign.toml",
        event_toml("vote", vote + timedelta(seconds=30), reminders=["1d", "0"]),
    )
    assert await service.reload("same minute")
    await settle(service)
    assert len(messages) == 1
    # 90 s later than planned: the minute changes, one notice, the '1d' is not sent again
    write_campaign(
        tmp_path / "campaign.toml",
        event_toml("vote", vote + timedelta(seconds=90), reminders=["1d", "0"]),
    )
    assert await service.reload("corrected")
    await settle(service)
    assert await service.reload("again")
    await settle(service)
    assert len(messages) == 2
    assert messages[1].message["To"] == "ada@example.org"
    summary = await service.ledger.status_summary(now=clock())
    assert {a.key for a in summary.alerts} == {"vote:1d", "vote:notice:1"}


async def test_a_failed_wake_up_is_logged_shown_by_healthz_and_the_next_one_fires(
    make_service: ServiceFactory,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    vote = clock() + timedelta(days=1, hours=1)
    service = await make_service(event_toml("vote", vote, reminders=["1d"]), subscribers=(ADA,))
    real_fire = service.ledger.fire_alert

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(service.ledger, "fire_alert", broken)
    clock.advance(hours=1, minutes=1)
    with caplog.at_level(logging.ERROR):
        await service.tick("alert vote:1d due")  # does not raise: the service keeps running
    assert "tick (alert vote:1d due) failed" in caplog.text
    ok, report = await service.health.report()
    assert not ok
    assert report["tick"]["last_error"]["wake_up"] == "alert vote:1d due"
    assert "database is locked" in report["tick"]["last_error"]["error"]

    monkeypatch.setattr(service.ledger, "fire_alert", real_fire)
    await service.tick("reconcile tick")  # the next wake-up, whichever it is
    await settle(service)
    assert recipients(service) == ["ada@example.org"]
    assert service.last_tick_error is None


async def test_a_database_error_during_a_reload_keeps_the_service_running(
    make_service: ServiceFactory,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = await make_service(event_toml("vote", clock() + timedelta(days=3)))

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(service.events, "record", broken)
    write_campaign(
        tmp_path / "campaign.toml",
        event_toml("vote", clock() + timedelta(days=3)),
        event_toml("pl-vote", clock() + timedelta(days=2)),
    )
    with caplog.at_level(logging.INFO):
        service.request_reload("SIGHUP")  # as the signal handler does: awaited by the reloader
        for _ in range(100):
            if "config reloaded (SIGHUP)" in caplog.text:
                break
            await asyncio.sleep(0.05)
    assert "change notices could not be recorded" in caplog.text
    assert "config reloaded (SIGHUP)" in caplog.text
    assert "pl-vote:1d" in service.scheduler.jobs()
    assert all(not t.done() for t in service._tasks), service._tasks  # nothing stopped


async def test_moving_send_at_sends_no_notice_for_an_all_day_event_but_a_new_date_does(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    day = (clock() + timedelta(days=3)).date()
    config = tmp_path / "campaign.toml"

    def all_day(on: object, send_at: str) -> None:
        write_campaign(
            config, f'[[events]]\nid = "vote"\ntitle = "Vote"\nwhen = {on}\nreminders = ["2d"]\n'
        )
        config.write_text(config.read_text().replace('send_at = "09:00"', f'send_at = "{send_at}"'))

    write_campaign(config)  # no events yet
    service = await make_service()
    await add_subscribers(service, clock, ADA)
    all_day(day, "09:00")
    assert await service.reload("added")
    clock.set(
        datetime.combine(day - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
        + timedelta(hours=12)
    )
    await service.fire_due()
    await settle(service)
    messages = service.test_server.messages  # type: ignore[attr-defined]
    assert len(messages) == 1
    all_day(day, "08:00")  # the date subscribers read is the same
    assert await service.reload("send_at moved")
    await settle(service)
    assert len(messages) == 1
    all_day(day + timedelta(days=1), "08:00")
    assert await service.reload("a day later")
    await settle(service)
    assert len(messages) == 2
