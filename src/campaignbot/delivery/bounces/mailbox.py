"""The bounce mailbox: a local Maildir the MTA delivers into, or an IMAP folder (TLS).

Both hand out messages one at a time with a stable key, and mark a message done only
after the caller has recorded it: a Maildir message moves from `new/` to `cur/` with the
Seen flag; an IMAP message moves to the processed folder (or gets a keyword flag). Nothing
is ever deleted, so a crash between recording and marking reads it again, and the
recorder's unique key makes that second reading count nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self
from urllib.parse import unquote, urlsplit

import aioimaplib

from campaignbot.errors import DeliveryError

#: the keyword that marks a processed message when there is no processed folder
DONE_KEYWORD = "$CampaignbotProcessed"
_UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")
#: messages larger than this are not bounces worth reading whole (and may be a DoS)
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class MailboxMessage:
    key: str  # stable across runs: "maildir:NAME" or "imap:FOLDER:UIDVALIDITY:UID"
    data: bytes
    handle: str  # the mailbox's own reference (file path, UID)


class Mailbox(Protocol):
    """Where the reader finds bounce reports."""

    source: str

    def messages(self) -> AsyncIterator[MailboxMessage]:
        """Unprocessed messages, oldest first."""
        ...

    async def mark_done(self, message: MailboxMessage) -> None:
        """The message was recorded: move it out of the way (never delete)."""


class MaildirMailbox:
    """A Maildir (`new/`, `cur/`, `tmp/`); `new/` and unseen `cur/` messages are read."""

    source = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _pending(self) -> list[Path]:
        try:
            new = [p for p in (self.path / "new").iterdir() if not p.name.startswith(".")]
            cur = [
                p
                for p in (self.path / "cur").iterdir()
                if not p.name.startswith(".") and "S" not in p.name.partition(":2,")[2]
            ]
        except OSError as err:
            raise DeliveryError(f"{self.path}: cannot read the bounce Maildir: {err}") from err
        # Maildir names start with the delivery time: sorting by name is oldest first
        return sorted(new + cur, key=lambda p: p.name)

    async def messages(self) -> AsyncIterator[MailboxMessage]:
        for path in self._pending():
            try:
                if path.stat().st_size > MAX_MESSAGE_BYTES:
                    data = path.open("rb").read(MAX_MESSAGE_BYTES)
                else:
                    data = path.read_bytes()
            except FileNotFoundError:  # another reader (or a person) moved it meanwhile
                continue
            except OSError as err:
                raise DeliveryError(f"{path}: cannot read: {err}") from err
            unique = path.name.partition(":")[0]
            yield MailboxMessage(f"maildir:{unique}", data, str(path))

    async def mark_done(self, message: MailboxMessage) -> None:
        path = Path(message.handle)
        unique, _, info = path.name.partition(":")
        flags = "".join(sorted(set(info.removeprefix("2,")) | {"S"}))
        target = self.path / "cur" / f"{unique}:2,{flags}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            pass  # already moved: recording it again was a no-op anyway


@dataclass(frozen=True)
class IMAPAccount:
    host: str
    port: int
    username: str
    password: str
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> IMAPAccount:
        """`imaps://user:password@host[:993]`; `imap://` (no TLS) only for loopback."""
        parts = urlsplit(url)
        if parts.scheme not in ("imaps", "imap") or not parts.hostname or not parts.username:
            raise ValueError("expected imaps://USER:PASSWORD@HOST[:PORT]")
        if parts.scheme == "imap" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("imap:// sends the password in clear: use imaps://")
        tls = parts.scheme == "imaps"
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if tls else 143),
            username=unquote(parts.username),
            password=unquote(parts.password or ""),
            tls=tls,
        )


def _check(response: aioimaplib.Response, what: str, where: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(bytes(line) for line in response.lines).decode(errors="replace")
        raise DeliveryError(f"{where}: IMAP {what} failed: {detail[:300]}")
    return response


class IMAPMailbox:
    """One IMAP folder read over TLS; done messages move to `processed` or get a keyword."""

    source = "imap"

    def __init__(
        self,
        account: IMAPAccount,
        *,
        folder: str = "INBOX",
        processed: str = "",
        ca_file: Path | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.account = account
        self.folder = folder
        self.processed = processed
        self._ca_file = ca_file
        self._timeout_s = timeout_s
        self._client: aioimaplib.IMAP4 | None = None
        self._where = f"{account.host}:{account.port}"

    async def __aenter__(self) -> Self:
        account = self.account
        try:
            if account.tls:
                context = ssl.create_default_context(
                    cafile=str(self._ca_file) if self._ca_file else None
                )
                client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                    account.host, account.port, timeout=self._timeout_s, ssl_context=context
                )
            else:
                client = aioimaplib.IMAP4(account.host, account.port, timeout=self._timeout_s)
            await client.wait_hello_from_server()
        except (TimeoutError, OSError, ssl.SSLError) as err:
            raise DeliveryError(f"{self._where}: cannot connect to IMAP: {err}") from err
        self._client = client
        try:
            _check(await client.login(account.username, account.password), "LOGIN", self._where)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            # the server may already be gone; there is nothing left to save
            with contextlib.suppress(Exception):
                await self._client.logout()
            transport = getattr(self._client.protocol, "transport", None)
            if transport is not None:
                transport.close()
            self._client = None

    @property
    def client(self) -> aioimaplib.IMAP4:
        assert self._client is not None, "use `async with IMAPMailbox(...)`"
        return self._client

    async def messages(self) -> AsyncIterator[MailboxMessage]:
        client = self.client
        selected = _check(await client.select(self.folder), "SELECT", self._where)
        validity = b"0"
        for line in selected.lines:
            match = _UIDVALIDITY_RE.search(bytes(line))
            if match:
                validity = match.group(1)
        if self.processed:
            await client.create(self.processed)  # NO when it exists: fine
            criteria = "ALL"
        else:
            criteria = f"UNKEYWORD {DONE_KEYWORD}"
        found = _check(await client.uid_search(criteria), "SEARCH", self._where)
        # the untagged SEARCH data come first; the last line is the completion text
        data = found.lines[:-1]
        uids = [u for line in data for u in bytes(line).decode().split() if u.isdigit()]
        for uid in sorted(uids, key=int):
            fetched = _check(await client.uid("fetch", uid, "(BODY.PEEK[])"), "FETCH", self._where)
            data = next((bytes(x) for x in fetched.lines if isinstance(x, bytearray)), None)
            if data is None:
                continue  # expunged meanwhile
            key = f"imap:{self.folder}:{validity.decode()}:{uid}"
            yield MailboxMessage(key, data[:MAX_MESSAGE_BYTES], uid)

    async def mark_done(self, message: MailboxMessage) -> None:
        client = self.client
        uid = message.handle
        if not self.processed:
            response = await client.uid("store", uid, "+FLAGS", f"({DONE_KEYWORD})")
            _check(response, "STORE", self._where)
        elif client.has_capability("MOVE"):
            _check(await client.uid("move", uid, self.processed), "MOVE", self._where)
        else:  # copy first; the original goes only once the copy exists
            _check(await client.uid("copy", uid, self.processed), "COPY", self._where)
            await client.uid("store", uid, "+FLAGS", "(\\Deleted)")
            await client.expunge()
