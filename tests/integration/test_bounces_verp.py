"""The VERP envelope sender, seen at a real aiosmtpd server: on with the setting, off without."""

from __future__ import annotations

from typing import Any

import pytest

from campaignbot.delivery.bounces.verp import derive_key, tag_of, verify_tag
from campaignbot.delivery.ledger import Ledger
from campaignbot.delivery.sender import Sender
from campaignbot.delivery.transport import SMTPTransport
from campaignbot.email.render import Renderer
from campaignbot.email.tokens import LinkSigner
from campaignbot.settings import Settings
from campaignbot.storage.database import Database
from tests.clock import FakeClock
from tests.conftest import REPO
from tests.fixtures.smtp import SMTPServer
from tests.integration.test_ledger import EVERYONE, Alert, insert_subscribers
from tests.integration.test_sender import T0, make_campaign

SECRET = "k" * 40


@pytest.mark.parametrize("bounce_address", ["bounces@bounce.example.org", None])
async def test_each_delivery_gets_its_own_signed_return_path(
    db: Database, smtp_server: Any, bounce_address: str | None
) -> None:
    server: SMTPServer = await smtp_server(start=True)
    settings = Settings(
        smtp=server.smtp_settings(), secret_key=SECRET, bounce_address=bounce_address
    )
    await insert_subscribers(db, 3)
    ledger = Ledger(db, owner="t")
    await ledger.fire_alert(Alert("vote", "1d"), EVERYONE, now=T0)
    campaign = make_campaign()
    renderer = Renderer(
        REPO / "templates", campaign, signer=LinkSigner(SECRET), public_url="https://x.org"
    )
    transport = SMTPTransport(settings.smtp)
    sender = Sender(
        ledger, transport, lambda: (renderer, campaign), clock=FakeClock(T0), settings=settings
    )
    try:
        assert (await sender.run_until_idle())["sent"] == 3
    finally:
        await transport.aclose()
    senders = [m.mail_from for m in server.messages]
    if bounce_address is None:  # nothing changes: the campaign's From address
        assert senders == ["alerts@example.org"] * 3
        return
    tags = [tag_of(s, bounce_address) for s in senders]
    assert all(t is not None for t in tags)
    ids = sorted(verify_tag(derive_key(SECRET), t) for t in tags if t)  # type: ignore[type-var]
    assert ids == [1, 2, 3]
    assert all(m.message["From"] == "Mine Ban Alerts <alerts@example.org>" for m in server.messages)
