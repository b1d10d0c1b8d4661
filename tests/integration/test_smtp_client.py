"""smtp_client against a scripted server on loopback: what goes over the wire, and
the corners aiosmtpd never shows (DATA accepted after a refused envelope, garbled
replies, AUTH LOGIN only)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from campaignbot.delivery.smtp_client import (
    SMTPConnection,
    SMTPConnectionError,
    SMTPReplyError,
    SMTPTimeoutError,
)

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n.\r\n"

Answer = Callable[[bytes], bytes | None]  # a command line -> the reply (None: say nothing)


@dataclass
class ScriptedServer:
    """Answers each command line with `answer(line)`; records every read as it came."""

    answer: Answer
    extensions: tuple[str, ...] = ("PIPELINING",)
    reads: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        buffer, in_data = b"", False
        try:
            while chunk := await reader.read(65536):
                self.reads.append(chunk)
                buffer += chunk
                while True:
                    if in_data:
                        if buffer.startswith(b".\r\n"):  # an empty message
                            end = 0
                        elif (end := buffer.find(b"\r\n.\r\n")) >= 0:
                            end += 2
                        else:
                            break
                        self.messages.append(buffer[:end])
                        buffer, in_data = buffer[end + 3 :], False
                        reply = self.answer(b"<content>")
                    else:
                        line, sep, rest = buffer.partition(b"\r\n")
                        if not sep:
                            break
                        buffer = rest
                        reply = self._reply(line)
                        in_data = reply is not None and reply.startswith(b"354")
                    if reply is not None:
                        writer.write(reply + b"\r\n")
                    if reply is not None and reply.startswith(b"421"):
                        return  # "closing the channel", as servers do
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _reply(self, line: bytes) -> bytes | None:
        if line.startswith(b"EHLO"):
            lines = ["scripted", *self.extensions]
            return "\r\n".join(
                f"250{' ' if i == len(lines) - 1 else '-'}{text}" for i, text in enumerate(lines)
            ).encode()
        return self.answer(line)


def standard(line: bytes) -> bytes | None:
    """A server that accepts everything."""
    if line.startswith(b"DATA"):
        return b"354 go ahead"
    if line.startswith(b"QUIT"):
        return b"221 bye"
    return b"250 OK"


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., Awaitable[ScriptedServer]]]:
    """Factory: `await scripted(answer=standard, extensions=("PIPELINING",))`."""
    servers: list[asyncio.Server] = []

    async def start(answer: Answer = standard, **options: Any) -> ScriptedServer:
        script = ScriptedServer(answer, **options)
        server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
        servers.append(server)
        script.port = server.sockets[0].getsockname()[1]
        return script

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def connect(script: ScriptedServer, **options: Any) -> SMTPConnection:
    return await SMTPConnection.open(
        "127.0.0.1", script.port, local_hostname="client.test", timeout_s=2, **options
    )


async def test_the_envelope_goes_out_in_one_write_when_pipelining(scripted: Any) -> None:
    script = await scripted()
    conn = await connect(script)
    reply = await conn.send("a@example.org", "b@example.org", MESSAGE)
    await conn.quit()
    assert str(reply) == "250 OK"
    envelope = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    assert envelope in script.reads
    assert script.messages == [b"Subject: hi\r\n\r\nhello\r\n"]


async def test_without_pipelining_each_command_waits_for_its_reply(scripted: Any) -> None:
    script = await scripted(extensions=())
    conn = await connect(script)
    await conn.send("a@example.org", "b@example.org", MESSAGE)
    await conn.quit()
    assert b"MAIL FROM:<a@example.org>\r\n" in script.reads
    assert b"RCPT TO:<b@example.org>\r\n" in script.reads


async def test_a_refused_recipient_keeps_the_session_in_step(scripted: Any) -> None:
    """DATA accepted although the only RCPT was refused (RFC 2920 3.1): the client ends
    an empty message, reports the RCPT reply, and the connection stays usable."""

    def answer(line: bytes) -> bytes | None:
        if line.startswith(b"RCPT TO:<gone@"):
            return b"550 5.1.1 no such user"
        if line == b"<content>" and script.messages[-1] == b"":
            return b"554 5.5.1 no valid recipients"
        return standard(line)

    script = await scripted(answer)
    conn = await connect(script)
    with pytest.raises(SMTPReplyError) as caught:
        await conn.send("a@example.org", "gone@example.org", MESSAGE)
    assert (caught.value.code, caught.value.phase) == (550, "RCPT")
    await conn.rset()
    reply = await conn.send("a@example.org", "b@example.org", MESSAGE)
    await conn.quit()
    assert reply.code == 250
    assert script.messages == [b"", b"Subject: hi\r\n\r\nhello\r\n"]


async def test_a_421_then_close_reports_the_reply_not_the_eof(scripted: Any) -> None:
    script = await scripted(
        lambda line: b"421 4.3.2 shutting down" if line[:4] == b"MAIL" else None
    )
    conn = await connect(script)
    with pytest.raises(SMTPReplyError) as caught:
        await asyncio.wait_for(conn.send("a@example.org", "b@example.org", MESSAGE), 1)
    assert (caught.value.code, caught.value.phase) == (421, "MAIL")


async def test_a_garbled_reply_closes_the_connection(scripted: Any) -> None:
    script = await scripted(lambda line: b"hello there" if line[:4] == b"MAIL" else b"250 OK")
    conn = await connect(script)
    with pytest.raises(SMTPConnectionError, match="not an SMTP reply") as caught:
        await conn.send("a@example.org", "b@example.org", MESSAGE)
    assert caught.value.phase == "MAIL"
    assert not conn.is_connected


async def test_silence_is_a_timeout_in_the_phase_it_happened(scripted: Any) -> None:
    script = await scripted(lambda line: None if line == b"<content>" else standard(line))
    conn = await SMTPConnection.open(
        "127.0.0.1", script.port, local_hostname="client.test", timeout_s=0.3
    )
    with pytest.raises(SMTPTimeoutError) as caught:
        await conn.send("a@example.org", "b@example.org", MESSAGE)
    assert caught.value.phase == "message"  # the content went out: maybe delivered
    assert not conn.is_connected


async def test_auth_login_when_plain_is_not_offered(scripted: Any) -> None:
    steps: list[bytes] = []

    def answer(line: bytes) -> bytes | None:
        steps.append(line)
        if line == b"AUTH LOGIN" or len(steps) == 2:
            return b"334 VXNlcm5hbWU6" if line == b"AUTH LOGIN" else b"334 UGFzc3dvcmQ6"
        if len(steps) == 3:
            ok = steps[1:] == [base64.b64encode(b"user"), base64.b64encode(b"s3cret")]
            return b"235 2.7.0 accepted" if ok else b"535 5.7.8 bad credentials"
        return standard(line)

    script = await scripted(answer, extensions=("AUTH LOGIN", "PIPELINING"))
    conn = await connect(script, username="user", password="s3cret")
    assert conn.supports("pipelining") and conn.extensions["auth"] == "LOGIN"
    await conn.quit()
    assert steps[0] == b"AUTH LOGIN"


async def test_a_refused_greeting_is_a_reply_error(scripted: Any) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.3.2 go away\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(SMTPReplyError) as caught:
            await SMTPConnection.open("127.0.0.1", port, local_hostname="c.test", timeout_s=2)
        assert (caught.value.code, caught.value.phase) == (554, "connect")
    finally:
        server.close()
        await server.wait_closed()


async def test_plaintext_sent_ahead_of_starttls_is_refused(scripted: Any) -> None:
    """A reply smuggled in before the TLS handshake would later pass as encrypted."""
    script = await scripted(
        lambda line: b"220 go ahead\r\n250 smuggled" if line == b"STARTTLS" else standard(line),
        extensions=("STARTTLS", "PIPELINING"),
    )
    with pytest.raises(SMTPConnectionError, match="unexpected data after the STARTTLS reply"):
        await connect(script, starttls=True)


async def test_an_endless_reply_line_is_a_connection_error(scripted: Any) -> None:
    script = await scripted(lambda line: b"250-" + b"x" * 20_000 if line[:4] == b"MAIL" else None)
    conn = await connect(script)
    with pytest.raises(SMTPConnectionError, match="longer than") as caught:
        await conn.send("a@example.org", "b@example.org", MESSAGE)
    assert caught.value.phase == "MAIL" and not conn.is_connected
