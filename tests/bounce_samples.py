"""Bounce mailbox messages for tests: RFC 3464 DSNs as Postfix writes them, and samples.

`dsn(...)` follows the layout of a DSN captured from the real Postfix of
tests/fixtures/mailservers.py; `sample(name)` reads tests/data/bounces/NAME.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data" / "bounces"


def sample(name: str, **replace: str) -> bytes:
    text = (DATA / name).read_bytes()
    for old, new in replace.items():
        text = text.replace(old.encode(), new.encode())
    return text


def dsn(
    return_path: str,
    recipients: list[tuple[str, str, str, str]],
    *,
    message_id: str | None = "<orig-1@example.org>",
    boundary: str = "A533F20E6BB.1796234597/mx.example.com",
) -> bytes:
    """A multipart/report DSN to `return_path`; recipients are (email, action, status, diag)."""
    blocks = "\n".join(
        f"Final-Recipient: rfc822; {email}\nOriginal-Recipient: rfc822;{email}\n"
        f"Action: {action}\nStatus: {status}\nDiagnostic-Code: {diag}\n"
        for email, action, status, diag in recipients
    )
    original = f"Message-ID: {message_id}\n" if message_id else ""
    return f"""\
Return-Path: <>
X-Original-To: {return_path}
Delivered-To: {return_path}
From: Mail Delivery System <MAILER-DAEMON@example.com>
Subject: Undelivered Mail Returned to Sender
To: {return_path}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Message-Id: <20261202180317.A9F8D20E6BD@mx.example.com>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: A533F20E6BB
Arrival-Date: Wed,  2 Dec 2026 18:03:17 +0000 (UTC)

{blocks}
--{boundary}
Content-Description: Undelivered Message
Content-Type: message/rfc822

Return-Path: <{return_path}>
From: Mine Ban Alerts <alerts@example.org>
To: {recipients[0][0] if recipients else "x@example.net"}
{original}Subject: Final vote tomorrow

hello

--{boundary}--
""".replace("\n", "\r\n").encode()
