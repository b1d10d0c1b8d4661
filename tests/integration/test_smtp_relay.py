"""What a real relay demands of the transport: certificates, STARTTLS that cannot be
stripped or spoofed, AUTH only under TLS, XOAUTH2 with token refresh, EHLO name,
health from real outcomes. Against aiosmtpd and a scripted server on loopback."""

from __future__ import annotations

import logging
import ssl
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from campaignbot.delivery.relay_health import RelayHealth
from campaignbot.delivery.smtp_session import is_loopback
from campaignbot.delivery.transport import IDLE_RECONNECT_S, SMTPTransport
from campaignbot.errors import RelayError
from campaignbot.settings import SMTPSettings
from tests.fixtures.scripted import ScriptedFactory, ScriptedServer, xoauth2_token
from tests.fixtures.smtp import SMTPServerFactory, TLSCertificate

SENDER = "alerts@example.org"
RECIPIENT = "matti@example.fi"
MESSAGE = b"From: alerts@example.org\r\nSubject: hi\r\n\r\n.hello\r\n"


async def send(mailer: SMTPTransport) -> str:
    return await mailer.send(MESSAGE, sender=SENDER, recipient=RECIPIENT)


Transports = Callable[[SMTPSettings], SMTPTransport]


@pytest.fixture
async def transports() -> AsyncIterator[Transports]:
    """Factory: SMTPTransport(settings), closed at teardown."""
    made: list[SMTPTransport] = []

    def make(settings: SMTPSettings) -> SMTPTransport:
        made.append(SMTPTransport(settings))
        return made[-1]

    yield make
    for mailer in made:
        await mailer.aclose()


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_a_self_signed_certificate_is_refused_unless_its_ca_file_is_set(
    smtp_server: SMTPServerFactory,
    tls_certificate: TLSCertificate,
    transports: Transports,
    tls: str,
) -> None:
    server = await smtp_server(tls=tls, certificate=tls_certificate, auth=("alice", "s3cret"))

    refused = transports(server.smtp_settings())
    with pytest.raises(RelayError) as caught:
        await send(refused)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert "CAMPAIGNBOT_SMTP__CA_FILE" in str(caught.value)  # the way out is named
    assert server.messages == []

    trusted = transports(server.smtp_settings(ca_file=tls_certificate.cert))
    assert (await send(trusted)).startswith("250")
    assert [m.login for m in server.messages] == ["alice"]
    assert trusted.session_info is not None
    assert trusted.session_info.describe("h:587", "alice") == (
        f"smtp://h:587 {'STARTTLS' if tls == 'starttls' else 'TLS'}, AUTH PLAIN as alice"
    )


async def test_stripped_starttls_is_refused_before_any_credential_is_sent(
    scripted_smtp: ScriptedFactory, transports: Transports
) -> None:
    # a man in the middle removed STARTTLS from the EHLO reply; AUTH is still offered
    script = await scripted_smtp(extensions=("AUTH PLAIN LOGIN",))
    settings = SMTPSettings(
        host="127.0.0.1", port=script.port, username="alice", password="s3cret", timeout_s=5
    )

    with pytest.raises(RelayError, match="does not offer STARTTLS"):
        await send(transports(settings))

    assert [line.split()[0] for line in script.sent()] == [b"EHLO"]  # then hung up
    assert not any(b"AUTH" in line for line in script.sent())


async def test_a_starttls_reply_with_an_injected_second_packet_is_not_believed(
    scripted_smtp: ScriptedFactory, tls_certificate: TLSCertificate, transports: Transports
) -> None:
    """Plaintext sent right after the 220, in its own packet, must never count as a reply
    from inside TLS (the old client believed `250 PWNED` in 9 of 25 trials)."""

    def inject(server: ScriptedServer, line: bytes) -> list[bytes] | None:
        if line == b"STARTTLS":
            return [b"220 2.0.0 go ahead", b"250-INJECTED\r\n250 PWNED"]
        return None

    for _ in range(5):
        script = await scripted_smtp(
            answer=inject, extensions=("AUTH PLAIN",), context=tls_certificate.server_context()
        )
        settings = SMTPSettings(
            host="127.0.0.1",
            port=script.port,
            username="alice",
            password="s3cret",
            ca_file=tls_certificate.cert,
            timeout_s=5,
        )
        mailer = transports(settings)
        # the client is already in the TLS handshake when the packet comes: it fails
        with pytest.raises(RelayError, match="STARTTLS failed"):
            await send(mailer)
        assert script.messages == []
        assert not any(b"AUTH" in line for line in script.sent(tls=False))
        assert not any(b"PWNED" in line or b"INJECTED" in line for line in script.sent())


async def test_auth_without_tls_to_loopback_is_allowed(
    scripted_smtp: ScriptedFactory, transports: Transports
) -> None:
    script = await scripted_smtp(extensions=("AUTH PLAIN",))
    settings = SMTPSettings(
        host="127.0.0.1", port=script.port, tls="none", username="u", password="p", timeout_s=5
    )

    assert (await send(transports(settings))).startswith("250")

    assert any(line.startswith(b"AUTH PLAIN") for line in script.sent())
    assert is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("relay.example.org") and not is_loopback("192.0.2.1")


async def test_auth_without_tls_to_a_remote_host_is_refused(
    monkeypatch: pytest.MonkeyPatch, scripted_smtp: ScriptedFactory, transports: Transports
) -> None:
    script = await scripted_smtp(extensions=("AUTH PLAIN",))
    # pretend 127.0.0.1 is remote, so the refusal can be seen against a real server
    monkeypatch.setattr("campaignbot.delivery.smtp_session.is_loopback", lambda host: False)
    base = {"host": "127.0.0.1", "port": script.port, "tls": "none", "timeout_s": 5}
    settings = SMTPSettings(username="u", password="p", **base)

    with pytest.raises(RelayError, match="ALLOW_PLAINTEXT_AUTH"):
        await send(transports(settings))
    assert not any(b"AUTH" in line for line in script.sent())

    allowed = SMTPSettings(username="u", password="p", allow_plaintext_auth=True, **base)
    assert (await send(transports(allowed))).startswith("250")


def xoauth2_server(valid: list[str]) -> object:
    """Accepts only the token in valid[0], answering expiry as Gmail does (334 then 535)."""

    def answer(server: ScriptedServer, line: bytes) -> bytes | None:
        found = xoauth2_token(line)
        if found is not None:
            return (
                b"235 2.7.0 Accepted"
                if found == ("alice@example.org", valid[0])
                else (b"334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0=")
            )
        if line == b"":  # the client's empty answer to the error challenge
            return b"535 5.7.8 Username and Password not accepted"
        return None

    return answer


async def test_xoauth2_reruns_the_token_command_only_when_the_token_expired(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    valid = ["token-1"]
    script = await scripted_smtp(answer=xoauth2_server(valid), extensions=("AUTH XOAUTH2",))
    (tmp_path / "current").write_text("token-1\n")
    command = tmp_path / "get-token"
    command.write_text(f"#!/bin/sh\necho run >> {tmp_path}/runs\ncat {tmp_path}/current\n")
    command.chmod(command.stat().st_mode | stat.S_IXUSR)
    settings = SMTPSettings(
        host="127.0.0.1",
        port=script.port,
        tls="none",
        username="alice@example.org",
        auth="xoauth2",
        oauth_token_command=str(command),
        timeout_s=5,
        max_connections=1,
    )
    now = [0.0]
    mailer = SMTPTransport(settings, clock=lambda: now[0])
    try:
        await send(mailer)
        now[0] += IDLE_RECONNECT_S + 1  # the session is dropped as idle; a new one logs in
        await send(mailer)
        assert (tmp_path / "runs").read_text().count("run") == 1  # the token is reused

        # an hour later: the relay no longer takes token-1; the command now prints token-2
        valid[0] = "token-2"
        (tmp_path / "current").write_text("token-2\n")
        now[0] += 3600
        assert (await send(mailer)).startswith("250")
        now[0] += IDLE_RECONNECT_S + 1
        await send(mailer)
    finally:
        await mailer.aclose()

    assert (tmp_path / "runs").read_text().count("run") == 2  # re-run once, on expiry
    assert len(script.messages) == 4
    auths = [xoauth2_token(line) for line in script.sent() if line.startswith(b"AUTH")]
    assert [a[1] for a in auths if a] == ["token-1", "token-1", "token-1", "token-2", "token-2"]


async def test_xoauth2_token_from_a_file_and_a_token_the_relay_never_takes(
    scripted_smtp: ScriptedFactory, tmp_path: Path, transports: Transports
) -> None:
    valid = ["good"]
    script = await scripted_smtp(answer=xoauth2_server(valid), extensions=("AUTH XOAUTH2",))
    token_file = tmp_path / "token"
    token_file.write_text("bad\n")
    settings = SMTPSettings(
        host="127.0.0.1",
        port=script.port,
        tls="none",
        username="alice@example.org",
        auth="xoauth2",
        oauth_token_file=token_file,
        timeout_s=5,
    )
    mailer = transports(settings)

    with pytest.raises(RelayError, match=r"535 5\.7\.8") as caught:
        await send(mailer)
    assert caught.value.code == 535 and not caught.value.permanent

    token_file.write_text("good\n")  # the operator's refresher wrote a new one
    assert (await send(mailer)).startswith("250")


async def test_the_ehlo_name_is_the_local_hostname_setting(
    smtp_server: SMTPServerFactory, transports: Transports
) -> None:
    server = await smtp_server()
    mailer = transports(server.smtp_settings(local_hostname="mail.campaign.example.org"))

    await send(mailer)

    assert server.ehlo_names == ["mail.campaign.example.org"]


async def test_health_follows_real_outcomes_and_logs_each_change_once(
    smtp_server: SMTPServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="campaignbot.delivery.relay_health")
    server = await smtp_server()
    now = [1000.0]
    health = RelayHealth(f"127.0.0.1:{server.port}", clock=lambda: now[0])
    mailer = SMTPTransport(server.smtp_settings(max_connections=2), health=health)
    try:
        await send(mailer)
        assert health.as_dict()["status"] == "up" and health.last_success_at == 1000.0
        await server.stop()
        now[0] = 1010.0
        for _ in range(3):
            with pytest.raises(RelayError):
                await send(mailer)
        assert health.is_down and health.consecutive_failures == 3
        assert health.last_failure_at == 1010.0
        assert "cannot connect" in str(health.last_failure)
        await server.start()
        await mailer.check()  # the idle check: a NOOP or a new session, within the cap
        assert health.up is True and health.consecutive_failures == 0
    finally:
        await mailer.aclose()

    levels = [(r.levelname, r.getMessage().split(": ", 1)[1]) for r in caplog.records]
    assert [level for level, _ in levels] == ["WARNING", "INFO"]
    assert levels[0][1].startswith("SMTP relay is down: cannot connect")
    assert server.max_concurrent <= 2


async def test_the_cap_holds_for_sends_and_checks_together(
    smtp_server: SMTPServerFactory,
) -> None:
    import asyncio

    server = await smtp_server()
    server.fail("DATA", delay_s=0.2)
    mailer = SMTPTransport(server.smtp_settings(max_connections=2))
    try:
        await asyncio.gather(*(send(mailer) for _ in range(6)), mailer.check(), mailer.check())
    finally:
        await mailer.aclose()
    assert server.max_concurrent <= 2 and server.connections == 2


@dataclass(frozen=True)
class ClientAuthCertificate(TLSCertificate):
    """The server's certificate, and a server context that demands a client certificate."""

    client_ca: Path = Path()

    def server_context(self) -> ssl.SSLContext:
        context = super().server_context()
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(self.client_ca)
        return context


@pytest.fixture
def client_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed client certificate and its key (the openssl CLI)."""
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=campaignbot", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_relay_that_demands_a_client_certificate_gets_the_configured_one(
    smtp_server: SMTPServerFactory,
    tls_certificate: TLSCertificate,
    client_certificate: tuple[Path, Path],
) -> None:
    cert, key = client_certificate
    demanding = ClientAuthCertificate(tls_certificate.cert, tls_certificate.key, client_ca=cert)
    server = await smtp_server(tls="tls", certificate=demanding)
    base = server.smtp_settings(ca_file=tls_certificate.cert)

    without = SMTPTransport(base)
    with_cert = SMTPTransport(base.model_copy(update={"client_cert": cert, "client_key": key}))
    try:
        with pytest.raises(RelayError):
            await send(without)
        assert (await send(with_cert)).startswith("250")
    finally:
        await without.aclose()
        await with_cert.aclose()
    assert len(server.messages) == 1
