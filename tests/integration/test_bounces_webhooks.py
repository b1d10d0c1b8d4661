"""Relay webhooks through the real Starlette routes (httpx), recorded in a real database.

Payloads are signed as each provider documents it: Mailgun with an HMAC of timestamp and
token, SendGrid with a real ECDSA P-256 key pair made here, Postmark with basic auth.
A forged request gets 401 and changes nothing; a replayed event changes nothing twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, update
from starlette.applications import Starlette

from campaignbot.delivery.bounces.reader import recorder_for
from campaignbot.delivery.bounces.verp import derive_key, return_path
from campaignbot.delivery.bounces.webhooks import hook_recorder, webhook_providers
from campaignbot.delivery.ledger import Ledger
from campaignbot.settings import BounceSettings, Settings
from campaignbot.storage.database import Database
from campaignbot.storage.tables import bounce_reports, deliveries
from campaignbot.subscribers.model import SubscriberInput, SubscriberStatus
from campaignbot.subscribers.store import SubscriberStore
from campaignbot.web.hooks import HookContext, hook_routes
from tests.clock import FakeClock
from tests.integration.test_ledger import EVERYONE, Alert

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
SECRET = "k" * 40
BOUNCES = "bounces@example.org"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


@dataclass
class Hooks:
    client: httpx.AsyncClient
    db: Database
    store: SubscriberStore
    sent: dict[str, int]  # email -> delivery id

    async def status(self, email: str) -> SubscriberStatus:
        subscriber = await self.store.get_by_email(email)
        assert subscriber is not None
        return subscriber.status

    async def delivery_status(self, email: str) -> str:
        async with self.db.engine.connect() as conn:
            query = select(deliveries.c.status).where(deliveries.c.id == self.sent[email])
            return str((await conn.execute(query)).scalar_one())

    async def reports(self) -> int:
        async with self.db.engine.connect() as conn:
            query = select(func.count()).select_from(bounce_reports)
            return int((await conn.execute(query)).scalar_one())


@pytest.fixture
async def hooks(db: Database) -> AsyncIterator[Hooks]:
    settings = Settings(
        secret_key=SECRET,
        bounce_address=BOUNCES,
        bounces=BounceSettings(
            hard_limit=1,
            mailgun_signing_key=MAILGUN_KEY,  # type: ignore[arg-type]
            sendgrid_public_key=SENDGRID_PUBLIC,
            postmark_username="hook",
            postmark_password="s3cret",  # type: ignore[arg-type]
        ),
    )
    store = SubscriberStore(db)
    for email in ("a@example.net", "b@example.net", "c@example.net"):
        entry = SubscriberInput.create(email, locale="en", timezone="UTC")
        await store.add(entry, now=T0, source="test")
    await Ledger(db, owner="t").fire_alert(Alert("vote", "7d"), EVERYONE, now=T0)
    async with db.engine.begin() as conn:
        await conn.execute(
            update(deliveries).values(
                status="sent",
                sent_at=T0,
                message_id="<m."
                + func.cast(deliveries.c.id, type_=deliveries.c.message_id.type)
                + "@example.org>",
            )
        )
    sent = {}
    for subscriber in await store.list_subscribers():
        async with db.engine.connect() as conn:
            query = select(deliveries.c.id).where(deliveries.c.subscriber_id == subscriber.id)
            sent[subscriber.email] = int((await conn.execute(query)).scalar_one())
    context = HookContext(
        providers=webhook_providers(settings.bounces, bounce_address=BOUNCES),
        record=hook_recorder(recorder_for(db, settings), FakeClock(T0)),
    )
    app = Starlette(routes=hook_routes(context))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://x.org") as client:
        yield Hooks(client, db, store, sent)


def mailgun_body(event: dict[str, object], *, key: str = MAILGUN_KEY) -> bytes:
    timestamp, token = "1780000000", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    payload = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }
    return json.dumps(payload).encode()


def mailgun_failure(hooks: Hooks, email: str, event_id: str) -> dict[str, object]:
    return {
        "id": event_id,
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": email,
        "envelope": {"sender": return_path(BOUNCES, derive_key(SECRET), hooks.sent[email])},
        "message": {"headers": {"message-id": f"m.{hooks.sent[email]}@example.org"}},
        "delivery-status": {
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
        },
    }


def sendgrid_request(
    events: list[dict[str, object]], *, key: ec.EllipticCurvePrivateKey = PRIVATE
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = "1780000000"
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    return body, headers


async def test_mailgun_bounce_is_recorded_once_and_replays_change_nothing(hooks: Hooks) -> None:
    body = mailgun_body(mailgun_failure(hooks, "a@example.net", "mg-1"))
    first = await hooks.client.post("/hooks/mailgun", content=body)
    assert first.status_code == 200
    assert first.json() == {"received": 1, "actions": {"suppressed": 1}}
    assert await hooks.status("a@example.net") is SubscriberStatus.BOUNCED
    assert await hooks.delivery_status("a@example.net") == "bounced"
    replay = await hooks.client.post("/hooks/mailgun", content=body)
    assert replay.json() == {"received": 1, "actions": {"duplicate": 1}}
    assert await hooks.reports() == 1


async def test_mailgun_complaint_unsubscribes(hooks: Hooks) -> None:
    event = {
        "id": "mg-2",
        "event": "complained",
        "recipient": "b@example.net",
        "message": {"headers": {}},
    }
    response = await hooks.client.post("/hooks/mailgun", content=mailgun_body(event))
    assert response.json()["actions"] == {"unsubscribed": 1}
    assert await hooks.status("b@example.net") is SubscriberStatus.COMPLAINED


async def test_sendgrid_signed_events(hooks: Hooks) -> None:
    body, headers = sendgrid_request(
        [
            {"email": "a@example.net", "event": "delivered", "sg_event_id": "sg-0"},
            {
                "email": "a@example.net",
                "event": "bounce",
                "type": "bounce",
                "status": "5.1.1",
                "reason": "550 5.1.1 unknown user",
                "sg_event_id": "sg-1",
                "smtp-id": f"<m.{hooks.sent['a@example.net']}@example.org>",
            },
            {"email": "b@example.net", "event": "spamreport", "sg_event_id": "sg-2"},
            {
                "email": "c@example.net",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "sg-3",
            },
        ]
    )
    response = await hooks.client.post("/hooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"received": 3, "actions": {"suppressed": 2, "unsubscribed": 1}}
    assert await hooks.status("a@example.net") is SubscriberStatus.BOUNCED
    assert await hooks.status("b@example.net") is SubscriberStatus.COMPLAINED
    assert await hooks.delivery_status("b@example.net") == "complained"


async def test_postmark_with_basic_auth(hooks: Hooks) -> None:
    payload = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Email": "c@example.net",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    }
    auth = httpx.BasicAuth("hook", "s3cret")
    response = await hooks.client.post("/hooks/postmark", json=payload, auth=auth)
    assert response.json() == {"received": 1, "actions": {"suppressed": 1}}
    assert await hooks.status("c@example.net") is SubscriberStatus.BOUNCED


@pytest.mark.parametrize("provider", ["mailgun", "sendgrid", "postmark"])
async def test_forgeries_get_401_and_change_nothing(hooks: Hooks, provider: str) -> None:
    if provider == "mailgun":
        body = mailgun_body(mailgun_failure(hooks, "a@example.net", "mg-9"), key="wrong")
        response = await hooks.client.post("/hooks/mailgun", content=body)
    elif provider == "sendgrid":
        events = [{"email": "a@example.net", "event": "spamreport", "sg_event_id": "sg-9"}]
        body, headers = sendgrid_request(events, key=ec.generate_private_key(ec.SECP256R1()))
        response = await hooks.client.post("/hooks/sendgrid", content=body, headers=headers)
        # a genuine signature over a different body is a forgery too
        good_body, good_headers = sendgrid_request(events)
        tampered = good_body.replace(b"spamreport", b"bounce")
        second = await hooks.client.post("/hooks/sendgrid", content=tampered, headers=good_headers)
        assert second.status_code == 401
    else:
        payload = {"RecordType": "SpamComplaint", "ID": 1, "Email": "a@example.net"}
        auth = httpx.BasicAuth("hook", "guess")
        response = await hooks.client.post("/hooks/postmark", json=payload, auth=auth)
    assert response.status_code == 401
    assert await hooks.status("a@example.net") is SubscriberStatus.ACTIVE
    assert await hooks.reports() == 0


async def test_an_unconfigured_provider_is_404(hooks: Hooks) -> None:
    assert (await hooks.client.post("/hooks/ses", content=b"{}")).status_code == 404
