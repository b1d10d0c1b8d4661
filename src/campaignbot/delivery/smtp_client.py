"""One SMTP client connection on asyncio streams, with ESMTP PIPELINING (RFC 2920).

Why not aiosmtplib here: it waits for each reply before writing the next command and
drops replies that arrive early, so every message costs four round trips (MAIL, RCPT,
DATA, content) and, profiled on loopback, about three times the CPU of this client.
With PIPELINING the envelope goes out in one write and a message costs two round trips
(benchmarks/README.md). This client does only what the transport needs: implicit TLS
or STARTTLS, EHLO, AUTH PLAIN or LOGIN, one transaction at a time, NOOP, RSET, QUIT.

Errors say what the connection is good for afterwards: `SMTPReplyError` means the
server answered and the session is in step (RSET, then reuse it); `SMTPConnectionError`
means no usable answer came (closed, timed out, garbled) and the connection is closed.
Both carry the `phase` they happened in, which tells whether the content was sent.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass

#: the longest reply line accepted (RFC 5321 allows 512 octets; servers send more)
MAX_LINE = 8192


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # lines joined with "\n"

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    @property
    def ok(self) -> bool:
        return 200 <= self.code <= 299


class SMTPError(Exception):
    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase  # connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, message, ...


class SMTPReplyError(SMTPError):
    """The server refused; the session is still in step."""

    def __init__(self, reply: Reply, phase: str) -> None:
        super().__init__(str(reply), phase)
        self.code = reply.code
        self.text = reply.text


class SMTPConnectionError(SMTPError):
    """No usable reply: the connection was lost, timed out or garbled, and is closed."""


class SMTPTimeoutError(SMTPConnectionError):
    """The server did not answer in time (the connection is closed)."""


class SMTPConnection:
    """A connected, greeted (and, as configured, encrypted and logged-in) session."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout_s: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout_s = timeout_s
        self._phase = "connect"  # what the reply being awaited answers, for errors
        self._buffer = bytearray()  # received, not yet parsed
        #: EHLO keywords (lower case) -> their parameters
        self.extensions: dict[str, str] = {}

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        local_hostname: str,
        timeout_s: float,
        implicit_tls: bool = False,
        starttls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> SMTPConnection:
        """Connect, read the greeting, EHLO, STARTTLS (required when asked) and AUTH.

        Without `tls_context` a TLS connection makes the default one, which reads the
        system's CA certificates (tens of ms, blocking): a pool should pass its own."""
        context = None
        if implicit_tls or starttls:
            context = tls_context or ssl.create_default_context()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=context if implicit_tls else None,
                    server_hostname=host if implicit_tls else None,
                ),
                timeout_s,
            )
        except TimeoutError:
            raise SMTPTimeoutError(f"no connection within {timeout_s:g} s", "connect") from None
        except OSError as err:  # refused, unreachable, TLS handshake (ssl.SSLError)
            raise SMTPConnectionError(_describe(err), "connect") from err
        conn = cls(reader, writer, timeout_s=timeout_s)
        try:
            conn._expect(await conn._reply("connect"), 220, "connect")
            await conn._ehlo(local_hostname)
            if context is not None and starttls:
                await conn._starttls(host, context, local_hostname)
            if username and password:
                await conn._login(username, password)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- state ---------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return not self._writer.is_closing() and not self._reader.at_eof()

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    def close(self) -> None:
        """Drop the connection without a word (after an error, or when cancelled)."""
        self._writer.close()

    # -- commands ------------------------------------------------------------------

    async def send(self, sender: str, recipient: str, data: bytes) -> Reply:
        """One transaction. `data` is the dot-stuffed content ending in CRLF.CRLF;
        addresses are bare (the caller checked them); non-ASCII ones need SMTPUTF8."""
        utf8 = not (sender.isascii() and recipient.isascii())
        mail = b"MAIL FROM:<%s>%s\r\n" % (sender.encode(), b" SMTPUTF8" if utf8 else b"")
        rcpt = b"RCPT TO:<%s>\r\n" % recipient.encode()
        if self.supports("pipelining"):
            await self._pipelined_envelope(mail, rcpt)
        else:
            self._expect(await self._command(mail, "MAIL"), 250, "MAIL")
            self._expect(await self._command(rcpt, "RCPT"), 250, "RCPT")
            self._expect(await self._command(b"DATA\r\n", "DATA"), 354, "DATA")
        self._writer.write(data)
        reply = await self._reply("message")
        self._expect(reply, 250, "message")
        return reply

    async def noop(self) -> None:
        self._expect(await self._command(b"NOOP\r\n", "NOOP"), 250, "NOOP")

    async def rset(self) -> None:
        self._expect(await self._command(b"RSET\r\n", "RSET"), 250, "RSET")

    async def quit(self) -> None:
        """Say goodbye (whatever the answer) and close."""
        try:
            await self._command(b"QUIT\r\n", "QUIT")
        except SMTPConnectionError:
            pass
        finally:
            self.close()

    # -- internals -----------------------------------------------------------------

    async def _pipelined_envelope(self, mail: bytes, rcpt: bytes) -> None:
        """MAIL, RCPT and DATA in one write; then every reply is read, in order, so the
        session stays in step even when an early one is an error."""
        self._writer.write(mail + rcpt + b"DATA\r\n")
        error: SMTPReplyError | None = None
        try:
            async with asyncio.timeout(self._timeout_s):  # one timer for the three replies
                for phase, expected in (("MAIL", 250), ("RCPT", 250), ("DATA", 354)):
                    reply = await self._read_reply(phase)
                    if error is None:
                        try:
                            self._expect(reply, expected, phase)
                        except SMTPReplyError as err:
                            error = err
                    elif reply.code == 354:
                        # DATA accepted after a refused envelope (RFC 2920 3.1): send an
                        # empty message, which the server must reject for want of recipients
                        self._writer.write(b".\r\n")
                        await self._read_reply("message")
        except (TimeoutError, OSError, SMTPConnectionError) as err:
            broken = self._broken(err)
            if error is not None:  # e.g. "421 closing": report the reply, not the EOF
                raise error from None
            raise broken from (None if broken is err else err)
        if error is not None:
            raise error

    async def _ehlo(self, local_hostname: str) -> None:
        reply = await self._command(b"EHLO %s\r\n" % local_hostname.encode(), "EHLO")
        if reply.code // 100 == 5:  # an old server: HELO, no extensions
            self._expect(
                await self._command(b"HELO %s\r\n" % local_hostname.encode(), "EHLO"), 250, "EHLO"
            )
            self.extensions = {}
            return
        self._expect(reply, 250, "EHLO")
        self.extensions = {}
        for line in reply.text.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            self.extensions[keyword.lower()] = params

    async def _starttls(self, host: str, context: ssl.SSLContext, local_hostname: str) -> None:
        if not self.supports("starttls"):
            raise SMTPConnectionError("server does not offer STARTTLS", "STARTTLS")
        self._expect(await self._command(b"STARTTLS\r\n", "STARTTLS"), 220, "STARTTLS")
        if self._buffer:  # plaintext sent ahead to pass as encrypted (STARTTLS injection)
            self.close()
            raise SMTPConnectionError("unexpected data after the STARTTLS reply", "STARTTLS")
        try:
            await asyncio.wait_for(
                self._writer.start_tls(context, server_hostname=host), self._timeout_s
            )
        except TimeoutError:
            raise SMTPTimeoutError("TLS handshake timed out", "STARTTLS") from None
        except OSError as err:
            raise SMTPConnectionError(_describe(err), "STARTTLS") from err
        await self._ehlo(local_hostname)  # the extensions may differ once encrypted

    async def _login(self, username: str, password: str) -> None:
        methods = self.extensions.get("auth", "").upper().split()
        user, secret = username.encode(), password.encode()
        if "PLAIN" in methods:
            token = base64.b64encode(b"\0" + user + b"\0" + secret)
            reply = await self._command(b"AUTH PLAIN " + token + b"\r\n", "AUTH")
        elif "LOGIN" in methods:
            self._expect(await self._command(b"AUTH LOGIN\r\n", "AUTH"), 334, "AUTH")
            self._expect(await self._command(base64.b64encode(user) + b"\r\n", "AUTH"), 334, "AUTH")
            reply = await self._command(base64.b64encode(secret) + b"\r\n", "AUTH")
        else:
            raise SMTPConnectionError("server offers no AUTH PLAIN or LOGIN", "AUTH")
        self._expect(reply, 235, "AUTH")

    async def _command(self, line: bytes, phase: str) -> Reply:
        self._writer.write(line)
        return await self._reply(phase)

    async def _reply(self, phase: str) -> Reply:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._read_reply(phase)
        except (TimeoutError, OSError, SMTPConnectionError) as err:
            broken = self._broken(err)
            raise broken from (None if broken is err else err)

    def _broken(self, err: BaseException) -> SMTPConnectionError:
        """Close after a failed read and say why; the phase is the reply awaited."""
        self.close()
        if isinstance(err, SMTPConnectionError):
            return err
        if isinstance(err, TimeoutError):
            return SMTPTimeoutError(f"no reply within {self._timeout_s:g} s", self._phase)
        # OSError: reset by the peer, or the like
        return SMTPConnectionError(_describe(err), self._phase)

    async def _read_reply(self, phase: str) -> Reply:
        """One reply, however many lines; the caller sets the timeout."""
        self._phase = phase
        lines: list[str] = []
        while True:
            line = await self._read_line(phase)
            code, separator = line[:3], line[3:4]
            if not code.isdigit() or separator not in (b" ", b"-", b"\r", b"\n"):
                raise SMTPConnectionError(f"not an SMTP reply: {line[:80]!r}", phase)
            lines.append(line[4:].rstrip(b"\r\n").decode("utf-8", "replace"))
            if separator != b"-":
                return Reply(int(code), "\n".join(lines))

    async def _read_line(self, phase: str) -> bytes:
        # One read usually brings all three pipelined replies; they are then parsed
        # from the buffer without waiting (cheaper than a readline per line).
        buffer = self._buffer
        end = buffer.find(b"\n", 0, MAX_LINE)
        while end < 0:
            if len(buffer) >= MAX_LINE:
                raise SMTPConnectionError(f"reply line longer than {MAX_LINE} bytes", phase)
            data = await self._reader.read(65536)
            if not data:
                raise SMTPConnectionError("connection closed by the server", phase)
            buffer += data
            end = buffer.find(b"\n", 0, MAX_LINE)
        line = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        return line

    @staticmethod
    def _expect(reply: Reply, code: int, phase: str) -> None:
        # 250 also admits 251 ("will forward") and other 2xx
        if reply.code != code and not (code == 250 and reply.ok):
            raise SMTPReplyError(reply, phase)


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
