"""Mail transports against a real aiosmtpd server and a real Maildir."""

from __future__ import annotations

import asyncio
import email.policy
import mailbox
import time
from collections.abc import AsyncIterator, Callable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from campaignbot.delivery.transport import (
    MaildirTransport,
    RateLimiter,
    SMTPTransport,
    Transport,
    make_transport,
)
from campaignbot.errors import DeliveryError, RelayError
from campaignbot.settings import SMTPSettings
from tests.fixtures.smtp import (
    ReceivedMessage,
    SMTPServerFactory,
    ThreadedSMTPServer,
    TLSCertificate,
)

SENDER = "alerts@example.org"
RECIPIENT = "matti@example.fi"

TransportFactory = Callable[..., SMTPTransport]


@pytest.fixture(params=[True, False], ids=["pipelining", "lockstep"])
def smtp_pipelining(request: pytest.FixtureRequest) -> bool:
    """Every SMTP test here runs against a server with and one without PIPELINING."""
    return bool(request.param)


def alert(to: str = RECIPIENT, **headers: str) -> EmailMessage:
    """A multipart/alternative UTF-8 message like the ones render.py builds."""
    message = EmailMessage()
    message["From"] = Address("Miinakieltoliike – Hälytykset", "alerts", "example.org")
    message["To"] = Address("Matti Meikäläinen", addr_spec=to)
    message["Subject"] = "Eduskunta äänestää tänään: Ottawan sopimus"
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in headers.items():
        message[name] = value
    message.set_content("Hyvä Matti,\n.rivi alkaa pisteellä\nŻółć gęślą jaźń.\n")
    message.add_alternative("<p>Hyvä Matti — <b>äänestys</b> tänään.</p>\n", subtype="html")
    return message


@pytest.fixture
async def transport() -> AsyncIterator[TransportFactory]:
    """Factory for SMTPTransport that closes each one after the test."""
    made: list[SMTPTransport] = []

    def make(settings: SMTPSettings, **options: Any) -> SMTPTransport:
        made.append(SMTPTransport(settings, **options))
        return made[-1]

    yield make
    for each in made:
        await each.aclose()


async def send(mailer: Transport, to: str = RECIPIENT) -> str:
    return await mailer.send(alert(to), sender=SENDER, recipient=to)


async def test_it_delivers_a_multipart_utf8_message(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())
    sent = alert(Bcc="secret@example.org")

    reply = await mailer.send(sent, sender=SENDER, recipient=RECIPIENT)

    assert reply.startswith("250")
    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos) == (SENDER, [RECIPIENT])
    got = received.message
    assert got["Subject"] == sent["Subject"]
    assert got["From"].addresses[0].display_name == "Miinakieltoliike – Hälytykset"
    assert got["To"].addresses[0].display_name == "Matti Meikäläinen"
    assert got["Bcc"] is None and b"secret@example.org" not in received.data
    assert sent["Bcc"] == "secret@example.org"  # the caller's message is left alone
    text, html = (part.get_content() for part in got.iter_parts())
    assert text == "Hyvä Matti,\n.rivi alkaa pisteellä\nŻółć gęślą jaźń.\n"
    assert html == "<p>Hyvä Matti — <b>äänestys</b> tänään.</p>\n"


def flat(message: EmailMessage) -> list[object]:
    """Every header and decoded body of every part, however they were folded."""
    return [
        (part.items(), None if part.is_multipart() else part.get_payload(decode=True))
        for part in message.walk()
    ]


async def test_headers_go_out_as_the_smtp_policy_writes_them_except_long_urls(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())
    url = "https://alerts.example.org/unsubscribe?t=" + "x" * 120
    plain, with_url = alert(), alert(**{"List-Unsubscribe": f"<{url}>"})

    await mailer.send(plain, sender=SENDER, recipient=RECIPIENT)
    await mailer.send(with_url, sender=SENDER, recipient=RECIPIENT)

    stock = ReceivedMessage(SENDER, [RECIPIENT], plain.as_bytes(policy=email.policy.SMTP))
    assert flat(server.messages[0].message) == flat(stock.message)
    # email.policy.SMTP would fold this into =?utf-8?q?...?= words no client decodes
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in server.messages[1].data
    assert server.messages[1].message["List-Unsubscribe"] == f"<{url}>"


async def test_the_pool_bounds_and_reuses_connections(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    server.fail("DATA", delay_s=0.005)  # keep sessions busy so senders overlap
    mailer = transport(server.smtp_settings(max_connections=4))

    await asyncio.gather(*(send(mailer, f"user{i}@example.org") for i in range(50)))

    assert len(server.messages) == 50
    assert server.max_concurrent == 4
    assert server.connections == 4


@pytest.mark.parametrize(
    ("phase", "reply", "permanent"),
    [
        ("MAIL", "451 4.3.0 try later", False),
        ("MAIL", "550 5.7.1 sender rejected", True),
        ("RCPT", "451 4.3.0 try later", False),
        ("RCPT", "550 5.1.1 no such user", True),
        ("DATA", "452 4.3.1 insufficient storage", False),
        ("DATA", "554 5.7.1 message rejected", True),
    ],
    ids=["451-mail", "550-mail", "451-rcpt", "550-rcpt", "452-data", "554-data"],
)
async def test_a_reply_keeps_its_code_and_the_connection(
    smtp_server: SMTPServerFactory,
    transport: TransportFactory,
    phase: Any,
    reply: str,
    permanent: bool,
) -> None:
    server = await smtp_server()
    server.fail(phase, reply, times=1)
    mailer = transport(server.smtp_settings())

    with pytest.raises(DeliveryError) as caught:
        await send(mailer)
    await send(mailer)  # after RSET, on the same connection

    err = caught.value
    code = int(reply[:3])
    assert (err.code, err.permanent, err.after_data) == (code, permanent, False)
    assert str(err) == f"127.0.0.1:{server.port}: {RECIPIENT}: {reply}"
    assert err.__cause__ is not None
    assert len(server.messages) == 1
    assert server.connections == 1


async def test_a_server_that_is_down_is_a_temporary_error_naming_it(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server(start=False)
    mailer = transport(server.smtp_settings())

    with pytest.raises(DeliveryError) as caught:
        await send(mailer)
    with pytest.raises(DeliveryError):
        await mailer.check()
    await server.start()
    await mailer.check()
    await send(mailer)

    err = caught.value
    assert str(err).startswith(f"127.0.0.1:{server.port}: cannot connect: ")
    assert (err.code, err.permanent, err.after_data) == (None, False, False)
    assert len(server.messages) == 1


async def test_a_disconnect_during_data_may_have_delivered(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    server.fail("DATA", drop=True, times=1)
    mailer = transport(server.smtp_settings())

    with pytest.raises(DeliveryError) as caught:
        await send(mailer)
    await send(mailer)  # a fresh connection replaces the broken one

    err = caught.value
    assert (err.code, err.permanent, err.after_data) == (None, False, True)
    assert str(err).startswith(f"127.0.0.1:{server.port}: {RECIPIENT}: no reply after")
    assert server.connections == 2
    assert len(server.messages) == 1


async def test_a_server_slower_than_the_timeout_during_data_may_have_delivered(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    server.fail("DATA", delay_s=2, times=1)
    mailer = transport(server.smtp_settings(timeout_s=0.2))

    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        await send(mailer)
    assert time.monotonic() - started < 1.5
    await send(mailer)

    assert (caught.value.permanent, caught.value.after_data) == (False, True)
    assert len(server.messages) == 1


async def test_a_timeout_before_data_is_an_ordinary_temporary_error(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    server.fail("RCPT", delay_s=2, times=1)
    mailer = transport(server.smtp_settings(timeout_s=0.2))

    with pytest.raises(DeliveryError) as caught:
        await send(mailer)

    err = caught.value
    assert (err.code, err.permanent, err.after_data) == (None, False, False)
    assert str(err).startswith(f"127.0.0.1:{server.port}: {RECIPIENT}: ")
    assert str(err).endswith("during RCPT")


async def test_a_dropped_idle_connection_is_replaced(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())
    await send(mailer)

    server.drop_connections()
    await send(mailer)  # whether or not the client has noticed yet
    server.drop_connections()
    await asyncio.sleep(0.05)  # now it has
    await send(mailer)

    assert len(server.messages) == 3
    assert server.connections == 3


async def test_a_421_on_a_reused_connection_is_retried_on_a_new_one(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())
    await send(mailer)
    server.fail("MAIL", "421 4.4.2 idle timeout", times=1)

    await send(mailer)

    assert len(server.messages) == 2
    assert server.connections == 2


async def test_a_long_idle_connection_is_reopened(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    now = [1000.0]
    mailer = transport(server.smtp_settings(), clock=lambda: now[0])

    await send(mailer)
    now[0] += 30
    await send(mailer)
    now[0] += 61
    await send(mailer)

    assert server.connections == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rate_per_s", "burst", "calls_at", "delays"),
    [
        (10, 1, [0, 0, 0], [0, 0.1, 0.2]),
        (10, 1, [0, 0.1, 0.25], [0, 0, 0]),
        (10, 1, [0, 0.05], [0, 0.05]),
        (10, 3, [0, 0, 0, 0], [0, 0, 0, 0.1]),
        (10, 2, [0, 5, 5, 5], [0, 0, 0, 0.1]),
        (2, 1, [0, 0, 0.2], [0, 0.5, 0.8]),
    ],
    ids=["queue", "spaced", "early", "burst", "idle-does-not-bank", "late-joiner"],
)
def test_rate_limiter_delays(
    rate_per_s: float, burst: float, calls_at: list[float], delays: list[float]
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s, burst=burst, clock=clock)
    got = []
    for at in calls_at:
        clock.now = 100.0 + at
        got.append(limiter.reserve())
    assert got == pytest.approx(delays)


@pytest.mark.parametrize("rate_per_s", [0, -1])
def test_rate_limiter_needs_a_positive_rate(rate_per_s: float) -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        RateLimiter(rate_per_s)


async def test_the_rate_limit_paces_messages(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings(rate_limit=20, max_connections=4))

    started = time.monotonic()
    await asyncio.gather(*(send(mailer) for _ in range(10)))

    assert time.monotonic() - started >= 0.4
    assert len(server.messages) == 10


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_tls_with_auth(
    smtp_server: SMTPServerFactory,
    transport: TransportFactory,
    tls_certificate: TLSCertificate,
    tls: str,
) -> None:
    server = await smtp_server(tls=tls, certificate=tls_certificate, auth=("alice", "s3cret"))
    mailer = transport(server.smtp_settings(), tls_context=tls_certificate.client_context())

    await send(mailer)
    await send(mailer)

    assert [m.login for m in server.messages] == ["alice", "alice"]
    assert server.connections == 1


async def test_an_untrusted_certificate_is_a_connection_error(
    smtp_server: SMTPServerFactory, transport: TransportFactory, tls_certificate: TLSCertificate
) -> None:
    server = await smtp_server(tls="tls", certificate=tls_certificate)
    mailer = transport(server.smtp_settings())  # system CAs do not know the test certificate

    with pytest.raises(DeliveryError, match=r"cannot connect: .*CERTIFICATE_VERIFY_FAILED"):
        await send(mailer)


async def test_starttls_is_required_when_configured(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()  # plain, no STARTTLS offered
    mailer = transport(server.smtp_settings(tls="starttls"))

    with pytest.raises(RelayError, match=r"server does not offer STARTTLS") as caught:
        await send(mailer)

    assert caught.value.permanent is False
    assert server.messages == []


async def test_a_wrong_password_is_not_the_recipients_fault(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server(auth=("alice", "s3cret"))
    mailer = transport(server.smtp_settings(password="wrong"))

    with pytest.raises(RelayError) as caught:
        await send(mailer)

    assert (caught.value.code, caught.value.permanent) == (535, False)
    assert str(caught.value).startswith(f"127.0.0.1:{server.port}: AUTH failed: 535 ")
    assert "wrong" not in str(caught.value)


async def test_an_unsendable_address_is_permanent(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())

    for bad in ("mätti@example.fi", "a@example.org>\r\nRCPT TO:<b@example.org"):
        with pytest.raises(DeliveryError) as caught:
            await mailer.send(alert(), sender=SENDER, recipient=bad)
        assert caught.value.permanent is True
    await send(mailer)

    assert [m.rcpt_tos for m in server.messages] == [[RECIPIENT]]


async def test_aclose_quits_and_ends_the_transport(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())
    await send(mailer)

    await mailer.aclose()
    await asyncio.sleep(0.05)

    assert server._sessions == set()
    with pytest.raises(DeliveryError, match="closed"):
        await send(mailer)


async def test_the_threaded_server_fixture_serves_another_loop(
    smtp_server_thread: Callable[..., ThreadedSMTPServer], transport: TransportFactory
) -> None:
    server = smtp_server_thread()
    server.fail("RCPT", "550 no such user", recipient="gone@example.org")
    mailer = transport(server.smtp_settings())

    await send(mailer)
    with pytest.raises(DeliveryError, match="550"):
        await send(mailer, "gone@example.org")
    server.wait_for_messages(1)
    server.stop()
    with pytest.raises(DeliveryError, match="cannot connect"):
        await send(mailer)  # the pooled connection was cut and nothing listens

    assert server.env()["CAMPAIGNBOT_SMTP__PORT"] == str(server.port)
    assert len(server.messages) == 1


async def test_maildir_writes_a_readable_message(tmp_path: Path) -> None:
    mailer = MaildirTransport(tmp_path / "outbox")
    await mailer.check()

    reply = await mailer.send(alert(Bcc="x@example.org"), sender=SENDER, recipient=RECIPIENT)

    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    key = reply.removeprefix("maildir:")
    got = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    assert got["Delivered-To"] == RECIPIENT
    assert got["Return-Path"] == f"<{SENDER}>"
    assert got["Subject"] == "Eduskunta äänestää tänään: Ottawan sopimus"
    assert got["Bcc"] is None
    await mailer.aclose()


async def test_maildir_check_fails_when_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "outbox").write_text("a file in the way")
    mailer = MaildirTransport(tmp_path / "outbox")

    with pytest.raises(DeliveryError, match=r"outbox: not writable"):
        await mailer.check()
    with pytest.raises(DeliveryError, match=r"outbox: matti@example.fi: cannot write"):
        await send(mailer)


async def test_smtp_check_uses_a_pooled_connection(
    smtp_server: SMTPServerFactory, transport: TransportFactory
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())

    await mailer.check()
    await send(mailer)
    await mailer.check()

    assert server.connections == 1


def test_make_transport_picks_smtp_when_a_host_is_set(tmp_path: Path) -> None:
    smtp = SMTPSettings(host="mail.example.org", username="alice", password="hunter2")

    chosen = make_transport(smtp, tmp_path)

    assert isinstance(chosen, SMTPTransport)
    assert chosen.description == "smtp://mail.example.org:587 (starttls, 8 connections)"
    assert "hunter2" not in chosen.description


def test_make_transport_falls_back_to_the_maildir_outbox() -> None:
    chosen = make_transport(SMTPSettings(), Path("var/outbox"))

    assert isinstance(chosen, MaildirTransport)
    assert chosen.description == "maildir var/outbox"


def test_description_mentions_the_rate_limit() -> None:
    smtp = SMTPSettings(host="h", port=25, tls="none", max_connections=2, rate_limit=5)
    assert SMTPTransport(smtp).description == "smtp://h:25 (none, 2 connections, 5 msg/s)"


async def test_it_sends_finished_bytes_as_they_are_dot_stuffed(
    smtp_server: SMTPServerFactory, transport: TransportFactory, tmp_path: Path
) -> None:
    server = await smtp_server()
    mailer = transport(server.smtp_settings())
    message = alert()
    data = message.as_bytes(policy=email.policy.SMTP)  # what Renderer.wire_alert hands over

    reply = await mailer.send(data, sender=SENDER, recipient=RECIPIENT)

    assert reply.startswith("250")
    [received] = server.messages
    assert flat(received.message) == flat(message)
    assert b"\r\n.rivi alkaa" in received.data  # the server removed the stuffed dot
    outbox = MaildirTransport(tmp_path / "outbox")
    key = (await outbox.send(data, sender=SENDER, recipient=RECIPIENT)).removeprefix("maildir:")
    stored = mailbox.Maildir(tmp_path / "outbox")[key].as_bytes()
    assert b"\r\n" not in stored and b"\n.rivi alkaa" in stored
