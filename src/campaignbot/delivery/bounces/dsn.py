"""Parse one message from the bounce mailbox into reports: DSN (RFC 3464), ARF (RFC 5965),
else whatever Mailman's detectors (`flufl.bounce`) recognise, else "not a bounce".

Pure: bytes in, `BounceReport`s out. Never raises on bad input: malformed MIME is a
message that is not a bounce, so the reader can count it once and move on.
"""

from __future__ import annotations

import logging
import re
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

from flufl.bounce import all_failures

from campaignbot.delivery.bounces.verp import tag_of
from campaignbot.email.reports import BounceReport, ReportKind, bare_message_id

logger = logging.getLogger(__name__)
# flufl.bounce logs every detector that trips over odd input at ERROR with a traceback;
# for us such a message is simply not a bounce, counted once, so keep those out of the log
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

#: permanent failures that say the address itself is bad: bad mailbox or domain (5.1.x),
#: mailbox disabled (5.2.1), no answer / no route for the domain (5.4.1, 5.4.4)
_ADDRESS_STATUSES = ("5.1.", "5.2.1", "5.4.1", "5.4.4")
_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CODE_RE = re.compile(r"^\s*([245]\d\d)\b")
#: headers of the report itself and of the returned original that may hold the VERP address
_ADDRESS_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Return-Path")


def classify(status: str | None) -> ReportKind:
    """A failed recipient's enhanced status code -> hard or soft bounce."""
    if status and status.startswith(_ADDRESS_STATUSES):
        return ReportKind.HARD
    return ReportKind.SOFT


def _text(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _address(field: object) -> str | None:
    """`rfc822; someone@example.org` -> `someone@example.org`."""
    text = _text(field)
    if not text:
        return None
    _, _, value = text.rpartition(";")
    value = value.strip().strip("<>").strip()
    return value if "@" in value else None


def _tags(messages: list[Message], bounce_address: str | None) -> str | None:
    for msg in messages:
        for header in _ADDRESS_HEADERS:
            for _, address in getaddresses([_text(v) for v in msg.get_all(header, [])]):
                tag = tag_of(address, bounce_address)
                if tag:
                    return tag
    return None


def _original(report: Message) -> Message | None:
    """The returned original message (or its headers) in a multipart/report."""
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif ctype == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return HeaderParser().parsestr(payload.decode("utf-8", "replace"))
    return None


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):
        return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", payload)]
    return []


def _find(msg: Message, ctype: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == ctype:
            return part
    return None


def _dsn(msg: Message, part: Message, base: dict[str, object], key: str) -> list[BounceReport]:
    reports: list[BounceReport] = []
    for block in _blocks(part)[1:]:  # the first block is about the message, then one per rcpt
        action = _text(block.get("Action")).lower()
        email = _address(block.get("Final-Recipient")) or _address(block.get("Original-Recipient"))
        if not action and email is None:
            continue
        diagnostic = _text(block.get("Diagnostic-Code"))
        _, _, detail = diagnostic.partition(";")
        detail = detail.strip() or diagnostic
        match = _STATUS_RE.search(_text(block.get("Status"))) or _STATUS_RE.search(detail)
        status = ".".join(match.groups()) if match else None
        code = _CODE_RE.match(detail)
        kind = classify(status) if action == "failed" else ReportKind.OTHER
        reports.append(
            BounceReport(
                key=f"{key}#{len(reports)}",
                kind=kind,
                email=email,
                status=status,
                smtp_code=int(code.group(1)) if code else None,
                diagnostic=(detail or f"action {action}")[:1000],
                **base,  # type: ignore[arg-type]
            )
        )
    return reports


def _arf(msg: Message, part: Message, base: dict[str, object], key: str) -> list[BounceReport]:
    fields = _blocks(part)
    report = fields[0] if fields else Message()
    feedback = _text(report.get("Feedback-Type")).lower() or "abuse"
    original = _original(msg)
    email = _address(report.get("Original-Rcpt-To"))
    if email is None and original is not None:
        email = _address(original.get("To"))
    kind = ReportKind.COMPLAINT if feedback in ("abuse", "fraud") else ReportKind.OTHER
    return [
        BounceReport(
            key=f"{key}#0",
            kind=kind,
            email=email,
            diagnostic=f"feedback report: {feedback}"[:1000],
            **base,  # type: ignore[arg-type]
        )
    ]


def _heuristic(msg: Message, base: dict[str, object], key: str) -> list[BounceReport]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd input must not stop the reader
        logger.debug("flufl.bounce failed on %s", key, exc_info=True)
        return []
    reports: list[BounceReport] = []
    for kind, addresses in ((ReportKind.HARD, permanent), (ReportKind.SOFT, temporary)):
        for raw in sorted(addresses):
            email = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            reports.append(
                BounceReport(
                    key=f"{key}#{len(reports)}",
                    kind=kind,
                    email=email,
                    diagnostic=f"non-standard bounce ({'permanent' if kind is ReportKind.HARD else 'temporary'})",
                    **base,  # type: ignore[arg-type]
                )
            )
    return reports


def parse_report(
    data: bytes, *, source: str, key: str, bounce_address: str | None = None
) -> list[BounceReport]:
    """Every report in one mailbox message; one OTHER report when it is not a bounce."""
    try:
        msg = message_from_bytes(data)
        original = None
        report_type = _text(msg.get_param("report-type", header="content-type")).lower()
        if msg.get_content_type() == "multipart/report":
            original = _original(msg)
        message_id = bare_message_id(_text(original.get("Message-ID"))) if original else None
        tag = _tags([msg] + ([original] if original is not None else []), bounce_address)
        base: dict[str, object] = {"source": source, "tag": tag, "message_id": message_id}
        reports: list[BounceReport] = []
        dsn_part = _find(msg, "message/delivery-status")
        arf_part = _find(msg, "message/feedback-report")
        if arf_part is not None or report_type == "feedback-report":
            reports = _arf(msg, arf_part or Message(), base, key)
        elif dsn_part is not None:
            reports = _dsn(msg, dsn_part, base, key)
        if not reports:
            reports = _heuristic(msg, base, key)
    except Exception as err:  # malformed beyond what the parser tolerates
        logger.debug("%s: unreadable message", key, exc_info=True)
        return [BounceReport(source=source, key=f"{key}#0", kind=ReportKind.OTHER,
                             diagnostic=f"unreadable: {type(err).__name__}")]  # fmt: skip
    if not reports:
        subject = _text(msg.get("Subject"))[:200]
        return [
            BounceReport(source=source, key=f"{key}#0", kind=ReportKind.OTHER, diagnostic=subject)
        ]
    return reports
