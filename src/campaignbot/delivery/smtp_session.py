"""Opening one ready-to-send aiosmtplib session: connect, EHLO, STARTTLS, AUTH.

Done step by step rather than by `SMTP.connect()`'s all-in-one, so that each step
can be held to campaignbot's rules and its failure named:

- STARTTLS, when configured, is required: a server that does not offer it (or a
  man in the middle that stripped it) is refused before any credential is sent;
- AUTH over a connection without TLS is refused unless the relay is on loopback or
  `SMTP__ALLOW_PLAINTEXT_AUTH=true`;
- a certificate that does not verify says which setting trusts a private CA;
- XOAUTH2 fetches a new token once when the relay rejects the cached one.

Every failure here is a `RelayError`: the relay, not a recipient, is at fault.
aiosmtplib itself guards the STARTTLS upgrade (it drops anything buffered after
the 220 and forgets the pre-TLS EHLO) and bounds every reply.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass

import aiosmtplib

from campaignbot.delivery.oauth_token import TokenSource
from campaignbot.errors import DeliveryError, RelayError
from campaignbot.settings import SMTPAuth, SMTPSettings, TLSMode

#: auto picks the first of these that the server offers (challenge-response first)
AUTO_MECHANISMS = ("cram-md5", "plain", "login")
#: XOAUTH2 failures that mean "this token is no longer good" (334 is the JSON challenge)
TOKEN_EXPIRED_CODES = frozenset({334, 535})
_TLS_LABEL = {TLSMode.NONE: "no TLS", TLSMode.STARTTLS: "STARTTLS", TLSMode.TLS: "TLS"}


@dataclass(frozen=True)
class SessionInfo:
    """What a session negotiated, for `check --smtp` and logs."""

    tls: str
    auth: str | None  # the mechanism, e.g. "PLAIN"; None without AUTH
    ehlo_name: str = ""

    @property
    def ehlo_name_qualified(self) -> bool:
        """Whether the EHLO name looks fully qualified (relays answer 504 5.5.2 if not)."""
        name = self.ehlo_name
        return name.startswith("[") or ("." in name.strip(".") and not name.endswith(".local"))

    def describe(self, where: str, username: str | None) -> str:
        """`smtp://relay:587 STARTTLS, AUTH PLAIN as alerts@example.org`."""
        text = f"smtp://{where} {self.tls}"
        return text + (f", AUTH {self.auth} as {username}" if self.auth else ", no AUTH")


def planned(settings: SMTPSettings) -> str:
    """What the settings ask for, before any session says what was negotiated."""
    text = f"smtp://{settings.host}:{settings.port} {_TLS_LABEL[settings.tls]}"
    if not settings.username:
        return text + ", no AUTH"
    mechanism = "" if settings.auth is SMTPAuth.AUTO else f" {settings.auth.value.upper()}"
    return text + f", AUTH{mechanism} as {settings.username}"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (plaintext AUTH to it crosses no network)."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    """The client context: system CAs or `CA_FILE`, plus the client certificate if set.

    Blocking (it reads files): build it once, in a thread."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
    except (OSError, ssl.SSLError) as err:
        raise RelayError(
            f"CAMPAIGNBOT_SMTP__CA_FILE {settings.ca_file}: cannot load: {err}"
        ) from err
    if settings.client_cert is not None:
        key = str(settings.client_key) if settings.client_key else None
        try:
            context.load_cert_chain(str(settings.client_cert), key)
        except (OSError, ssl.SSLError) as err:
            raise RelayError(
                f"CAMPAIGNBOT_SMTP__CLIENT_CERT {settings.client_cert}: cannot load: {err}"
            ) from err
    return context


class SessionOpener:
    """Opens authenticated sessions to one relay, as the settings say."""

    def __init__(self, settings: SMTPSettings, *, context: ssl.SSLContext | None = None) -> None:
        assert settings.host, "SessionOpener needs settings.host"
        self.settings = settings
        self.host = settings.host
        self.where = f"{settings.host}:{settings.port}"
        self._context = context
        self._local_hostname = settings.local_hostname
        self._tokens = (
            TokenSource(file=settings.oauth_token_file, command=settings.oauth_token_command)
            if settings.auth is SMTPAuth.XOAUTH2
            else None
        )
        self.last_info: SessionInfo | None = None

    @property
    def tokens(self) -> TokenSource | None:
        """The XOAUTH2 token source (None for password mechanisms)."""
        return self._tokens

    async def open(self) -> aiosmtplib.SMTP:
        """A connected session, past EHLO, STARTTLS and AUTH; raise RelayError."""
        settings = self.settings
        if self._local_hostname is None:
            # resolved once, in a thread: getfqdn may wait on DNS
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        if self._context is None and settings.tls is not TLSMode.NONE:
            # one context for the pool: making one reads the system's CA certificates
            self._context = await asyncio.to_thread(tls_context, settings)
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=settings.port,
            local_hostname=self._local_hostname,
            timeout=settings.timeout_s,
            use_tls=settings.tls is TLSMode.TLS,
            start_tls=False,  # done below, required rather than opportunistic
            tls_context=self._context,
        )
        step = "connect"
        try:
            await smtp.connect()
            step = "EHLO"
            await smtp.ehlo()
            if settings.tls is TLSMode.STARTTLS:
                step = "STARTTLS"
                if not smtp.supports_extension("starttls"):
                    # stripped by a man in the middle, or a misconfigured relay: either
                    # way no credential and no message goes out in clear
                    raise RelayError(
                        f"{self.where}: server does not offer STARTTLS "
                        "(required by CAMPAIGNBOT_SMTP__TLS=starttls)"
                    )
                await smtp.starttls()
                step = "EHLO"
                await smtp.ehlo()  # the pre-TLS extensions are forgotten; ask again
            step = "AUTH"
            mechanism = await self._authenticate(smtp) if settings.username else None
        except BaseException as err:
            smtp.close()
            if isinstance(err, RelayError):
                raise
            if isinstance(err, DeliveryError):  # the token source
                raise RelayError(str(err)) from err
            if isinstance(err, aiosmtplib.SMTPException | OSError | ssl.SSLError):
                raise self._relay_error(step, err) from err
            raise
        self.last_info = SessionInfo(_TLS_LABEL[settings.tls], mechanism, self._local_hostname)
        return smtp

    async def _authenticate(self, smtp: aiosmtplib.SMTP) -> str:
        settings = self.settings
        assert settings.username is not None
        if settings.tls is TLSMode.NONE and not (
            settings.allow_plaintext_auth or is_loopback(self.host)
        ):
            raise RelayError(
                f"{self.where}: refusing to send the password without TLS; use "
                "CAMPAIGNBOT_SMTP__TLS=starttls or tls (or CAMPAIGNBOT_SMTP__ALLOW_PLAINTEXT_AUTH=true)"
            )
        offered = smtp.server_auth_methods
        if self._tokens is not None:
            if "xoauth2" not in offered:
                raise RelayError(f"{self.where}: server does not offer AUTH XOAUTH2")
            token = await self._tokens.token()
            try:
                await smtp.auth_xoauth2(settings.username, token)
            except aiosmtplib.SMTPAuthenticationError as err:
                if err.code not in TOKEN_EXPIRED_CODES:
                    raise
                # expired: fetch a new token (once) and try again on the same session
                token = await self._tokens.refresh(token)
                if not smtp.is_connected:
                    raise  # the next session uses the new token
                await smtp.auth_xoauth2(settings.username, token)
            return "XOAUTH2"
        password = settings.password.get_secret_value() if settings.password else ""
        if settings.auth is SMTPAuth.AUTO:
            mechanism = next((m for m in AUTO_MECHANISMS if m in offered), None)
            if mechanism is None:
                raise RelayError(
                    f"{self.where}: server offers no AUTH PLAIN, LOGIN or CRAM-MD5"
                    + ("" if offered else " (no AUTH at all)")
                )
        else:
            mechanism = settings.auth.value
            if mechanism not in offered:
                raise RelayError(f"{self.where}: server does not offer AUTH {mechanism.upper()}")
        method = {
            "plain": smtp.auth_plain,
            "login": smtp.auth_login,
            "cram-md5": smtp.auth_crammd5,
        }[mechanism]
        await method(settings.username, password)
        return mechanism.upper()

    def _relay_error(self, step: str, err: BaseException) -> RelayError:
        code = err.code if isinstance(err, aiosmtplib.SMTPResponseException) else None
        text = _describe(err)
        if _cert_failed(err):
            text += (
                "; if the relay's certificate is signed by a private CA, "
                "set CAMPAIGNBOT_SMTP__CA_FILE to that CA's PEM file"
            )
        what = "cannot connect" if step == "connect" else f"{step} failed"
        return RelayError(f"{self.where}: {what}: {text}", code=code)


def _describe(err: BaseException) -> str:
    if isinstance(err, aiosmtplib.SMTPResponseException):
        return f"{err.code} {' '.join(err.message.split())}"
    return " ".join(str(err).split()) or type(err).__name__


def _cert_failed(err: BaseException | None) -> bool:
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(err):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False
