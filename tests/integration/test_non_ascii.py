"""Non-ASCII addresses (zoë@...): accepted at sign-up and import; a message that cannot
carry one is a clear permanent failure, never retried and never a bounce (issue 14, L7)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from campaignbot.campaign.planning import alerts_for_event
from campaignbot.subscribers.store import audience_clause
from tests.integration import test_web
from tests.integration.test_web import SiteFactory

site = test_web.site  # the fixture: a running app over a real database and SMTP server


async def test_an_alert_that_cannot_be_rendered_fails_once_and_is_not_retried(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    s = await site()
    zoe = await s.add("zoë@example.org", topics=["mine-ban-treaty"])
    event = s.service.campaign.event("msp-22")
    alert = alerts_for_event(event, s.service.campaign.campaign.send_at)[0]
    await s.service.ledger.fire_alert(alert, audience_clause(event.audience), now=s.clock())
    with caplog.at_level(logging.WARNING):
        outcomes = await s.service.sender.run_until_idle()
    if outcomes == {"sent": 1}:  # the message could carry it (SMTPUTF8): nothing to test
        return
    assert outcomes == {"failed": 1}
    s.clock.advance(days=1)
    assert await s.service.sender.run_until_idle() == {}  # nothing left to retry
    assert "non-ASCII address" in caplog.text
    assert "Traceback" not in caplog.text
    after = await s.service.store.get(zoe.id)
    assert after is not None
    assert after.hard_bounces == 0  # not the address's fault


async def test_a_confirmation_to_a_non_ascii_address_is_not_retried(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    s = await site()
    with caplog.at_level(logging.WARNING):
        assert (await s.subscribe("zoë@example.org")).status_code == 200
        await asyncio.sleep(0.3)
        if s.smtp.messages:  # sent with SMTPUTF8: nothing to test
            return
        counts = await s.app.state.web.drain()
    assert counts is None
    assert "non-ASCII address" in caplog.text
    assert "Traceback" not in caplog.text
    assert "confirm_mail_retry" not in caplog.text
