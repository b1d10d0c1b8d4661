"""Mail transports: a pool of aiosmtplib sessions to the relay, and a Maildir outbox.

The pool holds at most `MAX_CONNECTIONS` sessions and that is a hard cap on every
SMTP connection the process opens through it: sends, the idle health check (a NOOP
on a pooled session) and `check --smtp` all take a slot. Sessions are reused,
replaced when they died or sat idle too long, and closed, never reused, when their
state is unknown. Each message goes out in its own transaction as ready bytes
(`mime.as_wire`: CRLF lines), so aiosmtplib does no `EmailMessage` flattening.

Every outcome feeds `RelayHealth`; a failure of the relay itself (connect, TLS,
EHLO, AUTH) is a `RelayError`, which the sender treats as "pause", not as a
recipient's failed attempt.
"""

from __future__ import annotations

import asyncio
import email.message
import logging
import mailbox
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import aiosmtplib

from campaignbot.delivery.relay_health import RelayHealth
from campaignbot.delivery.smtp_session import SessionInfo, SessionOpener
from campaignbot.email.mime import as_file, as_wire
from campaignbot.errors import DeliveryError, RelayError
from campaignbot.settings import SMTPSettings

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
#: what a transport sends: a message, or its bytes as `mime.as_wire` makes them
Message = email.message.EmailMessage | bytes

#: a pooled connection idle this long is reopened rather than trusted (servers drop idle clients)
IDLE_RECONNECT_S = 60.0

_NOT_BARE = re.compile(r"[\x00-\x20\x7f<>]")


class Transport(Protocol):
    """Hands one rendered message to one recipient."""

    #: where mail goes, for logs and `check`; never contains a secret
    description: str

    @property
    def health(self) -> RelayHealth | None:
        """The relay's health from real outcomes (None: no relay, e.g. the Maildir)."""
        ...

    async def send(self, message: Message, *, sender: str, recipient: str) -> str:
        """Deliver `message` to `recipient`; return the server's reply; raise DeliveryError.

        `message` is an EmailMessage (its Bcc is left out) or the finished message
        bytes with CRLF line ends, not dot-stuffed (see `mime.as_wire`)."""
        ...

    async def check(self) -> None:
        """Raise DeliveryError unless mail can be handed over right now."""
        ...

    async def aclose(self) -> None:
        """Release connections; the transport is not used afterwards."""
        ...


class RateLimiter:
    """Token bucket allowing `rate_per_s` acquisitions per second with bursts of `burst`.

    Implemented as its equivalent GCRA ("virtual scheduling"): each caller reserves the
    next free slot, so concurrent callers queue fairly and nobody polls.
    """

    def __init__(self, rate_per_s: float, *, burst: float = 1.0, clock: Clock = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._interval_s = 1.0 / rate_per_s
        self._tolerance_s = (burst - 1.0) * self._interval_s
        self._clock = clock
        self._next_s: float | None = None  # theoretical arrival time of the next token

    def reserve(self) -> float:
        """Take one token; return how many seconds the caller must wait before using it."""
        now = self._clock()
        arrival = now if self._next_s is None else max(self._next_s, now)
        self._next_s = arrival + self._interval_s
        return max(0.0, arrival - self._tolerance_s - now)

    async def acquire(self) -> None:
        """Wait until a token is available and take it."""
        delay_s = self.reserve()
        if delay_s > 0:
            await asyncio.sleep(delay_s)


class _Connection:
    __slots__ = ("last_used", "smtp")

    def __init__(self, smtp: aiosmtplib.SMTP, now: float) -> None:
        self.smtp = smtp
        self.last_used = now


class _StaleConnectionError(Exception):
    """A reused connection died before the server answered anything: retry on a new one."""


class SMTPTransport:
    """At most `max_connections` reused aiosmtplib sessions, one message per transaction."""

    def __init__(
        self,
        settings: SMTPSettings,
        *,
        clock: Clock = time.monotonic,
        tls_context: ssl.SSLContext | None = None,
        health: RelayHealth | None = None,
    ) -> None:
        if not settings.host:
            raise ValueError("SMTPTransport needs settings.host")
        self._settings = settings
        self._opener = SessionOpener(settings, context=tls_context)
        self._where = self._opener.where
        self._clock = clock
        self._limiter = (
            RateLimiter(settings.rate_limit, clock=clock) if settings.rate_limit > 0 else None
        )
        # LIFO so a warm connection is preferred; None marks a slot not yet connected.
        self._slots: asyncio.LifoQueue[_Connection | None] = asyncio.LifoQueue()
        for _ in range(settings.max_connections):
            self._slots.put_nowait(None)
        self.health = health if health is not None else RelayHealth(self._where)
        self._last_ok: float | None = None
        self._closed = False
        rate = f", {settings.rate_limit:g} msg/s" if self._limiter else ""
        self.description = (
            f"smtp://{self._where} ({settings.tls.value}, "
            f"{settings.max_connections} connections{rate})"
        )

    @property
    def session_info(self) -> SessionInfo | None:
        """What the last session negotiated (TLS, AUTH mechanism); None before one opened."""
        return self._opener.last_info

    async def send(self, message: Message, *, sender: str, recipient: str) -> str:
        """Send one message in its own transaction; return the server's final reply."""
        _check_addresses(self._where, sender, recipient)
        data = _smtp_payload(message)
        if self._limiter is not None:
            await self._limiter.acquire()
        conn = await self._slots.get()
        try:
            if self._closed:
                raise DeliveryError(f"{self._where}: transport is closed")
            conn = self._keep_if_usable(conn)
            if conn is not None:
                try:
                    return await self._transact(conn, data, sender, recipient, reused=True)
                except _StaleConnectionError:
                    conn = None
            conn = await self._open()
            return await self._transact(conn, data, sender, recipient, reused=False)
        finally:
            self._release(conn)

    async def check(self) -> None:
        """NOOP on an idle pooled session, else open one, within the cap; raise DeliveryError.

        Fine without a slot when every connection is busy and sending succeeds: the
        sends are the proof, and a check must never open a connection beyond the cap.
        """
        if self._slots.empty() and self._recently_ok():
            return
        try:
            conn = await asyncio.wait_for(self._slots.get(), self._settings.timeout_s)
        except TimeoutError as err:
            raise DeliveryError(f"{self._where}: no connection free for health check") from err
        try:
            conn = self._keep_if_usable(conn)
            if conn is not None:
                try:
                    await conn.smtp.noop()
                except BaseException as err:
                    conn.smtp.close()
                    if not isinstance(err, aiosmtplib.SMTPException | OSError):
                        raise
                    conn = None
                else:
                    conn.last_used = self._last_ok = self._clock()
                    self.health.success()
                    return
            conn = await self._open()
        finally:
            self._release(conn)

    async def aclose(self) -> None:
        """QUIT idle connections; connections in use are closed when they come back."""
        self._closed = True
        idle: list[_Connection | None] = []
        while not self._slots.empty():
            idle.append(self._slots.get_nowait())
        for _ in idle:
            self._slots.put_nowait(None)
        await asyncio.gather(*(self._quit(conn) for conn in idle if conn is not None))

    # -- pool -----------------------------------------------------------------

    def _keep_if_usable(self, conn: _Connection | None) -> _Connection | None:
        if conn is None:
            return None
        if conn.smtp.is_connected and self._clock() - conn.last_used < IDLE_RECONNECT_S:
            return conn
        conn.smtp.close()
        return None

    def _release(self, conn: _Connection | None) -> None:
        """Give the slot back; a connection in an unknown state is closed, not reused."""
        if conn is not None and (self._closed or not conn.smtp.is_connected):
            conn.smtp.close()
            conn = None
        self._slots.put_nowait(conn)

    def _recently_ok(self) -> bool:
        return self._last_ok is not None and self._clock() - self._last_ok < IDLE_RECONNECT_S

    async def _open(self) -> _Connection:
        try:
            smtp = await self._opener.open()
        except RelayError as err:
            self.health.failure(str(err).removeprefix(f"{self._where}: "))
            raise
        self.health.success()
        logger.debug("%s: connected", self._where, extra={"action": "smtp_connected"})
        return _Connection(smtp, self._clock())

    async def _quit(self, conn: _Connection) -> None:
        try:
            await asyncio.wait_for(conn.smtp.quit(), min(self._settings.timeout_s, 5.0))
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            conn.smtp.close()

    # -- one transaction ----------------------------------------------------------

    async def _transact(
        self, conn: _Connection, data: bytes, sender: str, recipient: str, *, reused: bool
    ) -> str:
        """One transaction (MAIL, RCPT, DATA); a failure knows whether the content was sent."""
        smtp = conn.smtp
        options: list[str] = []
        encoding = "ascii"
        if not (sender.isascii() and recipient.isascii()):
            if not smtp.supports_extension("smtputf8"):
                raise DeliveryError(
                    f"{self._where}: {recipient}: non-ASCII address, server lacks SMTPUTF8",
                    permanent=True,
                )
            options.append("SMTPUTF8")
            encoding = "utf-8"
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(data)}")
        phase = "MAIL"
        try:
            await _envelope(smtp, b"MAIL", b"FROM:", sender, encoding, options)
            phase = "RCPT"
            await _envelope(smtp, b"RCPT", b"TO:", recipient, encoding)
            phase = "DATA"
            reply = await smtp.data(data)
        except aiosmtplib.SMTPResponseException as err:
            if phase == "MAIL" and reused and err.code == 421:  # it timed out our session
                smtp.close()
                raise _StaleConnectionError from err
            # The server answered: the session is in a known state, so it can be reused.
            await self._reset(conn)
            raise DeliveryError(
                f"{self._where}: {recipient}: {err.code} {_oneline(err.message)}",
                code=err.code,
                permanent=500 <= err.code <= 599,
            ) from err
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as err:
            smtp.close()
            timed_out = isinstance(err, TimeoutError)
            if phase == "MAIL" and reused and not timed_out:
                raise _StaleConnectionError from err  # the server had dropped our idle session
            self.health.failure(f"{_oneline(str(err))} during {phase}")
            if phase == "DATA":
                # aiosmtplib sends DATA and the content in one step: without the final
                # reply, the message may have been accepted
                raise DeliveryError(
                    f"{self._where}: {recipient}: no reply after the message data was sent, "
                    f"it may have been delivered: {err}",
                    after_data=True,
                ) from err
            raise DeliveryError(f"{self._where}: {recipient}: {err} during {phase}") from err
        except BaseException:  # cancelled mid-transaction: the session state is unknown
            smtp.close()
            raise
        conn.last_used = self._last_ok = self._clock()
        self.health.success()
        return f"{reply.code} {reply.message}"

    async def _reset(self, conn: _Connection) -> None:
        if not conn.smtp.is_connected:  # e.g. after a 421 the server has closed it
            return
        try:
            await conn.smtp.rset()
        except BaseException as err:
            conn.smtp.close()
            if not isinstance(err, aiosmtplib.SMTPException | OSError):
                raise


class MaildirTransport:
    """Delivers into a local Maildir (the outbox when no SMTP host is set)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"maildir {path}"
        self.health: RelayHealth | None = None  # no relay to be down
        self._lock = threading.Lock()  # mailbox.Maildir is not thread-safe
        self._mailbox: mailbox.Maildir | None = None

    async def send(self, message: Message, *, sender: str, recipient: str) -> str:
        """Write the message with `Return-Path` and `Delivered-To`; return "maildir:<key>"."""
        _check_addresses(str(self.path), sender, recipient)
        envelope = f"Return-Path: <{sender}>\nDelivered-To: {recipient}\n".encode()
        if isinstance(message, bytes):
            data = envelope + message.replace(b"\r\n", b"\n")
        else:
            data = envelope + as_file(message)
        try:
            key = await asyncio.to_thread(self._add, data)
        except (OSError, mailbox.Error) as err:
            raise DeliveryError(f"{self.path}: {recipient}: cannot write: {err}") from err
        return f"maildir:{key}"

    async def check(self) -> None:
        """Create the Maildir if needed and prove a file can be written into it."""
        try:
            await asyncio.to_thread(self._probe)
        except OSError as err:
            raise DeliveryError(f"{self.path}: not writable: {err}") from err

    async def aclose(self) -> None:
        """Nothing to release."""

    def _box(self) -> mailbox.Maildir:
        if self._mailbox is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # Maildir makes only the last
            self._mailbox = mailbox.Maildir(self.path, create=True)
        return self._mailbox

    def _add(self, data: bytes) -> str:
        with self._lock:
            return self._box().add(data)

    def _probe(self) -> None:
        with self._lock:
            self._box()
        with tempfile.TemporaryFile(dir=self.path / "tmp"):
            pass


def make_transport(smtp: SMTPSettings, maildir: Path) -> Transport:
    """SMTP when a host is configured, else the Maildir outbox."""
    if smtp.host:
        return SMTPTransport(smtp)
    return MaildirTransport(maildir)


def _check_addresses(where: str, sender: str, recipient: str) -> None:
    # Envelope addresses are written to the wire as they are: a CR LF in one would
    # inject commands. Refuse anything but a bare address.
    for address in (sender, recipient):
        if _NOT_BARE.search(address):
            raise DeliveryError(f"{where}: {address!r}: not a bare email address", permanent=True)


async def _envelope(
    smtp: aiosmtplib.SMTP,
    command: bytes,
    prefix: bytes,
    address: str,
    encoding: str,
    options: Sequence[str] = (),
) -> None:
    """MAIL FROM or RCPT TO: aiosmtplib's `mail`/`rcpt` less their RFC 5322 parse.

    That parse (email.utils, again for every message) cost ~40 us a command in
    bench_send's profile; the addresses here were validated at sign-up and checked
    bare by `_check_addresses` (no space, control character, < or >), so they are
    written as they are."""
    response = await smtp.execute_command(
        command,
        prefix + b"<" + address.encode(encoding) + b">",
        *(option.encode("ascii") for option in options),
    )
    if response.code not in (250, 251):  # 251: "user not local; will forward"
        raise aiosmtplib.SMTPResponseException(response.code, response.message)


def _smtp_payload(message: Message) -> bytes:
    """The DATA content as ready bytes: CRLF lines (`mime.as_wire`), not yet dot-stuffed.

    aiosmtplib normalises stray bare CR/LF to CRLF and quotes leading dots itself."""
    return message if isinstance(message, bytes) else as_wire(message)


def _oneline(text: str) -> str:
    return " ".join(text.split("\n"))
