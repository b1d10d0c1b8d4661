"""MIME building blocks for campaign emails, and their wire form (no I/O).

Headers are built once in their final, folded form (`Header`) instead of being
parsed and refolded by the stdlib on every flatten; bodies are quoted-printable
UTF-8, the calendar base64. `as_wire` is what goes into SMTP DATA (CRLF lines).
"""

from __future__ import annotations

import binascii
import copy
import functools
import re
import secrets
from dataclasses import dataclass
from email.header import Header as _StdHeader
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP, EmailPolicy, Policy
from typing import Any, Self

from campaignbot.errors import InvalidInputError

# Any run of whitespace or control/format characters (CR, LF, NUL, U+2028...) in a
# header value becomes one space: a value can never start a new header line.
_UNSAFE_RUN = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]+")
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_ADDR_SAFE = re.compile(r"^[^\s<>()\\,;:\"\[\]]+@[^\s<>()\\,;:\"\[\]@]+$")


class _Registry(HeaderRegistry):
    """The stdlib registry builds a new class on every lookup; build each once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


#: SMTP line endings (CRLF) and RFC 2047 for non-ASCII headers
POLICY = SMTP.clone(header_factory=_Registry())


class Header(str):
    """A header whose wire form is computed once, not on every flatten.

    The stdlib parses a header when it is set and refolds it whenever the message
    is flattened; that took ~90% of the time of a rendered message. The value is
    the decoded text, as with stdlib headers; their attributes (`addresses`,
    `datetime`, `params`, ...) are parsed on first use.
    """

    name: str
    _wire: str

    def __new__(cls, name: str, value: str, wire: str | None = None) -> Self:
        self = super().__new__(cls, value)
        self.name = name
        self._wire = value if wire is None else wire  # folds as "\n " (any linesep)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # copy.deepcopy and pickle
        return (type(self), (self.name, str(self), self._wire))

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self._wire}{policy.linesep}".replace("\n ", policy.linesep + " ")

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        parsed = self.__dict__.get("_parsed")
        if parsed is None:
            parsed = self.__dict__["_parsed"] = POLICY.header_factory(self.name, str(self))
        return getattr(parsed, attr)


def one_line(text: str) -> str:
    """`text` safe for a header: control characters and line breaks collapse to spaces."""
    return _UNSAFE_RUN.sub(" ", text).strip()


def unstructured(name: str, text: str) -> Header:
    """An unstructured header: short ASCII as is; else folded, non-ASCII as RFC 2047."""
    text = one_line(text)
    if text.isascii() and len(name) + len(text) < 76:
        return Header(name, text)
    # maxlinelen=75: the stdlib's default of 76 lets one encoded-word reach 76
    # characters, over RFC 2047's limit of 75
    wire = _StdHeader(text, header_name=name, maxlinelen=75).encode(linesep="\n")
    return Header(name, text, wire)


def mailbox(name: str, display_name: str, email: str) -> Header:
    """`Name <user@domain>`; the name quoted or RFC 2047-encoded as it needs."""
    email = email.strip()
    user, _, domain = email.rpartition("@")
    if not user or not domain or _UNSAFE_RUN.search(email) or not _ADDR_SAFE.match(email):
        raise InvalidInputError(f"{email!r}: not a usable email address")
    display_name = one_line(display_name)
    if not display_name:
        return Header(name, email)
    if _SPECIALS.search(display_name):
        quoted = '"' + re.sub(r'(["\\])', r"\\\1", display_name) + '"'
    else:
        quoted = display_name
    if display_name.isascii():
        return Header(name, f"{quoted} <{email}>")
    return Header(name, f"{quoted} <{email}>", f"{encoded_words(display_name)} <{email}>")


def encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded-words (each at most 75 characters), folded."""
    data = text.encode("utf-8")
    if len(data) <= 45:  # the common case: one word
        return f"=?utf-8?b?{binascii.b2a_base64(data, newline=False).decode('ascii')}?="
    return _StdHeader(text, "utf-8", maxlinelen=75).encode(linesep="\n")


def part(content_type: Header, cte: Header, payload: str, *extra: Header) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    part["Content-Type"] = content_type
    part["Content-Transfer-Encoding"] = cte
    for header in extra:
        part[header.name] = header
    part.set_payload(payload)
    return part


def multipart(subtype: str, parts: list[MIMEPart]) -> MIMEPart:
    # "=" cannot start a quoted-printable line nor sit inside base64, so these
    # boundaries never occur in the parts (the stdlib would search the text for one)
    boundary = f"=_{subtype[:3]}_{secrets.token_hex(10)}"  # =_alt_..., =_mix_...
    container = MIMEPart(policy=POLICY)
    container["Content-Type"] = Header(
        "Content-Type", f'multipart/{subtype}; boundary="{boundary}"'
    )
    for part in parts:
        container.attach(part)
    return container


def qp(text: str) -> str:
    if not text.endswith("\n"):
        text += "\n"
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")


def base64_lines(data: bytes) -> str:
    return "".join(
        binascii.b2a_base64(data[i : i + 57]).decode("ascii") for i in range(0, len(data), 57)
    )


QP = Header("Content-Transfer-Encoding", "quoted-printable")
B64 = Header("Content-Transfer-Encoding", "base64")
PLAIN = Header("Content-Type", 'text/plain; charset="utf-8"')
HTML = Header("Content-Type", 'text/html; charset="utf-8"')
CALENDAR = Header("Content-Type", 'text/calendar; method="PUBLISH"; charset="UTF-8"')
#: a cancellation's calendar part: the method parameter matches the file's METHOD
CALENDAR_CANCEL = Header("Content-Type", 'text/calendar; method="CANCEL"; charset="UTF-8"')
MIME_VERSION = Header("MIME-Version", "1.0")
ONE_CLICK = Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
AUTO = Header("Auto-Submitted", "auto-generated")


def build_message(
    headers: list[Header], text_qp: str, html_qp: str, attachment: MIMEPart | None
) -> EmailMessage:
    """`headers` in order, then multipart/alternative (text + HTML, already
    quoted-printable, see `qp`), in multipart/mixed with `attachment` if any."""
    msg = EmailMessage(policy=POLICY)
    for header in headers:
        msg[header.name] = header
    msg["MIME-Version"] = MIME_VERSION
    body = multipart("alternative", [part(PLAIN, QP, text_qp), part(HTML, QP, html_qp)])
    if attachment is None:
        msg["Content-Type"] = body["Content-Type"]
        msg.set_payload(body.get_payload())
    else:
        mixed = multipart("mixed", [body, attachment])
        msg["Content-Type"] = mixed["Content-Type"]
        msg.set_payload(mixed.get_payload())
    return msg


# --- wire form -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wire:
    """A message as SMTP DATA carries it (CRLF lines, not dot-stuffed), and its Message-ID."""

    data: bytes
    message_id: str


_LINE_BREAK = re.compile(r"[\r\n]")
_NEWLINES = re.compile(r"\r\n|\r|\n")


class _WirePolicy(EmailPolicy):
    """email.policy.SMTP, except that an ASCII header fitting one line is written as is.

    The stock folder turns a long URL header such as List-Unsubscribe into RFC 2047
    encoded words, which clients do not decode there (RFC 8058 one-click breaks), and
    folding is most of the cost of rendering a message. RFC 5322 allows 998 characters.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if value.isascii() and len(name) + len(value) <= 996 and not _LINE_BREAK.search(value):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return _fold(self, name, value)


@functools.lru_cache(maxsize=1024)
def _fold(policy: _WirePolicy, name: str, value: str) -> bytes:
    # the same Subject and From go to every subscriber of an alert
    return EmailPolicy.fold_binary(policy, name, value)


#: SMTP DATA: every line ends with CRLF
WIRE_POLICY = _WirePolicy(linesep="\r\n")
#: files (Maildir): LF line ends
FILE_POLICY = _WirePolicy()


def fold_line(header: Header) -> bytes:
    """One header as `as_wire` writes it: `Name: value\\r\\n`, folded if it must be."""
    short = header.isascii() and len(header.name) + len(header) <= 996
    if short and not _LINE_BREAK.search(header):
        return f"{header.name}: {header}\r\n".encode("ascii")
    # what EmailPolicy.fold_binary does with a header object (without the lru_cache
    # of _fold: a To header is different for every subscriber)
    return header.fold(policy=WIRE_POLICY).encode("ascii", "surrogateescape")


def crlf(text: str) -> str:
    """Every line break (LF, CR, CRLF) as CRLF, as the generator writes bodies."""
    if "\r" in text:
        return _NEWLINES.sub("\r\n", text)
    return text.replace("\n", "\r\n")


def without_bcc(message: EmailMessage) -> EmailMessage:
    """`message` without its Bcc header; a copy when it had one (never alters the caller's)."""
    if "Bcc" not in message:
        return message
    message = copy.deepcopy(message)
    del message["Bcc"]
    return message


def as_wire(message: EmailMessage) -> bytes:
    """The RFC 5322 bytes of `message` with CRLF line ends, Bcc left out (not dot-stuffed)."""
    return without_bcc(message).as_bytes(policy=WIRE_POLICY)


def as_file(message: EmailMessage) -> bytes:
    """The bytes of `message` with LF line ends, Bcc left out (for a Maildir)."""
    return without_bcc(message).as_bytes(policy=FILE_POLICY)
