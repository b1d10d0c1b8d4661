"""The relays' webhooks: verify each request as the provider documents it, read its events.

- Mailgun: HMAC-SHA256 of `timestamp + token` with the webhook signing key.
- SendGrid: ECDSA P-256 / SHA-256 over `timestamp + body`, checked with `cryptography`
  against the account's verification key.
- Postmark: HTTP basic auth on the webhook URL.

Pure: bytes and headers in, `BounceReport`s out. Only bounce, drop and complaint events
become reports; deliveries, opens and retries of a relay that will try again are skipped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from campaignbot.delivery.bounces.dsn import classify
from campaignbot.delivery.bounces.recorder import BounceRecorder
from campaignbot.delivery.bounces.verp import tag_of
from campaignbot.email.reports import BounceReport, ReportKind, bare_message_id
from campaignbot.errors import ConfigError, Problem
from campaignbot.settings import BounceSettings

_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _status(*texts: object) -> str | None:
    for text in texts:
        match = _STATUS_RE.search(str(text or ""))
        if match:
            return ".".join(match.groups())
    return None


def _line(*texts: object) -> str:
    return " ".join(" ".join(str(t).split()) for t in texts if t)[:1000]


def _code(value: object) -> int | None:
    return value if isinstance(value, int) and 200 <= value <= 599 else None


class MailgunWebhook:
    """Mailgun's signed webhooks (one event per request)."""

    name = "mailgun"

    def __init__(self, signing_key: str, *, bounce_address: str | None = None) -> None:
        self._key = signing_key.encode()
        self._bounce_address = bounce_address

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        try:
            signature = json.loads(body)["signature"]
            timestamp, token = str(signature["timestamp"]), str(signature["token"])
            given = str(signature["signature"])
        except (ValueError, KeyError, TypeError):
            return False
        expected = hmac.new(self._key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, given)

    def parse(self, body: bytes) -> list[BounceReport]:
        data: dict[str, Any] = json.loads(body)["event-data"]
        event, severity = data.get("event"), data.get("severity")
        reason = str(data.get("reason") or "")
        status_info = data.get("delivery-status") or {}
        status = _status(status_info.get("enhanced-code"), status_info.get("message"))
        if event == "complained" or reason == "suppress-complaint":
            kind = ReportKind.COMPLAINT
        elif event == "failed" and severity == "permanent":
            if reason == "suppress-unsubscribe":
                return []
            kind = ReportKind.HARD if reason == "suppress-bounce" else classify(status or "5.1.1")
        else:  # delivered, opened, or a temporary failure Mailgun will retry
            return []
        headers = (data.get("message") or {}).get("headers") or {}
        sender = str((data.get("envelope") or {}).get("sender") or "")
        return [
            BounceReport(
                source=self.name,
                key=f"mailgun:{data['id']}",
                kind=kind,
                email=data.get("recipient"),
                tag=tag_of(sender, self._bounce_address) if sender else None,
                message_id=bare_message_id(headers.get("message-id")),
                status=status,
                smtp_code=_code(status_info.get("code")),
                diagnostic=_line(status_info.get("message"), status_info.get("description"))
                or _line(event, reason),
            )
        ]


class SendGridWebhook:
    """SendGrid's signed event webhook (a JSON array of events per request)."""

    name = "sendgrid"
    SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
    TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

    def __init__(self, public_key: str) -> None:
        """`public_key`: the verification key SendGrid shows (base64 DER, ECDSA P-256)."""
        key = load_der_public_key(base64.b64decode(public_key))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("the SendGrid verification key is not an ECDSA public key")
        self._key = key

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        signature, timestamp = headers.get(self.SIGNATURE), headers.get(self.TIMESTAMP)
        if not signature or not timestamp:
            return False
        try:
            self._key.verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode() + body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def parse(self, body: bytes) -> list[BounceReport]:
        events = json.loads(body)
        if not isinstance(events, list):
            raise ValueError("expected a JSON array of events")
        reports = []
        for event in events:
            name, reason = event.get("event"), str(event.get("reason") or "")
            status = _status(event.get("status"), reason)
            if name == "spamreport" or (name == "dropped" and "Spam" in reason):
                kind = ReportKind.COMPLAINT
            elif name == "bounce":
                blocked = event.get("type") == "blocked"
                kind = ReportKind.SOFT if blocked else classify(status or "5.1.1")
            elif name == "dropped" and ("Bounced" in reason or "Invalid" in reason):
                kind = ReportKind.HARD
            else:
                continue
            reports.append(
                BounceReport(
                    source=self.name,
                    key=f"sendgrid:{event['sg_event_id']}",
                    kind=kind,
                    email=event.get("email"),
                    message_id=bare_message_id(event.get("smtp-id")),
                    status=status,
                    diagnostic=_line(name, reason),
                )
            )
        return reports


class PostmarkWebhook:
    """Postmark's bounce and spam-complaint webhooks, protected by basic auth."""

    name = "postmark"
    _HARD = frozenset({"HardBounce", "BadEmailAddress"})
    _SOFT = frozenset({"SoftBounce", "Transient", "DnsError", "Blocked", "SpamNotification"})

    def __init__(self, username: str, password: str) -> None:
        self._expected = base64.b64encode(f"{username}:{password}".encode()).decode()

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "basic" and hmac.compare_digest(
            credentials.strip().encode(), self._expected.encode()
        )

    def parse(self, body: bytes) -> list[BounceReport]:
        data: dict[str, Any] = json.loads(body)
        record, kind_name = data.get("RecordType"), str(data.get("Type") or "")
        if record == "SpamComplaint" or kind_name == "SpamComplaint":
            kind = ReportKind.COMPLAINT
        elif record == "Bounce" and kind_name in self._HARD:
            kind = ReportKind.HARD
        elif record == "Bounce" and kind_name in self._SOFT:
            kind = ReportKind.SOFT
        else:  # auto-replies, subscribe requests, manual deactivations...
            return []
        return [
            BounceReport(
                source=self.name,
                key=f"postmark:{record}:{data['ID']}",
                kind=kind,
                email=data.get("Email"),
                status=_status(data.get("Details")),
                diagnostic=_line(kind_name, data.get("Description"), data.get("Details")),
            )
        ]


Provider = MailgunWebhook | SendGridWebhook | PostmarkWebhook


def webhook_providers(
    settings: BounceSettings, *, bounce_address: str | None = None
) -> dict[str, Provider]:
    """The providers whose secrets are configured, by URL name."""
    providers: dict[str, Provider] = {}
    if settings.mailgun_signing_key is not None:
        providers["mailgun"] = MailgunWebhook(
            settings.mailgun_signing_key.get_secret_value(), bounce_address=bounce_address
        )
    if settings.sendgrid_public_key:
        try:
            providers["sendgrid"] = SendGridWebhook(settings.sendgrid_public_key)
        except (ValueError, binascii.Error, UnsupportedAlgorithm) as err:
            variable = "CAMPAIGNBOT_BOUNCES__SENDGRID_PUBLIC_KEY"
            problem = Problem("environment", variable, f"not a base64 DER ECDSA public key: {err}")
            raise ConfigError([problem]) from None
    if settings.postmark_username and settings.postmark_password is not None:
        providers["postmark"] = PostmarkWebhook(
            settings.postmark_username, settings.postmark_password.get_secret_value()
        )
    return providers


def hook_recorder(
    recorder: BounceRecorder, clock: Callable[[], datetime]
) -> Callable[[Sequence[BounceReport]], Awaitable[list[str]]]:
    """`HookContext.record`: the mailbox's recorder, returning plain action names."""

    async def record(reports: Sequence[BounceReport]) -> list[str]:
        return [r.action for r in await recorder.record(reports, now=clock())]

    return record
