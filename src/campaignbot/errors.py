"""One rooted error hierarchy; every message starts with the thing at fault."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CampaignbotError(Exception):
    """Unexpected campaignbot error."""

    #: a recovery hint the CLI prints under the message, when there is one
    hint: str | None = None

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message or self.__doc__)
        if hint is not None:
            self.hint = hint


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: `FILE: place: message`."""

    file: str
    place: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.place}: {self.message}"
            if self.place
            else (f"{self.file}: {self.message}")
        )


class InvalidInputError(CampaignbotError):
    """Invalid input."""

    def __init__(self, problems: list[Problem] | str, *, hint: str | None = None) -> None:
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            super().__init__(problems, hint=hint)
        else:
            self.problems = list(problems)
            super().__init__("\n".join(str(p) for p in self.problems), hint=hint)


class ConfigError(InvalidInputError):
    """Invalid campaign file or settings."""


class TemplateError(InvalidInputError):
    """Invalid template."""


class TokenReason(StrEnum):
    """Why a link token was refused (the web page says "expired" or "invalid")."""

    INVALID = "invalid"  # forged, tampered, malformed or made for another purpose
    EXPIRED = "expired"  # genuine, but older than its purpose allows


class TokenError(CampaignbotError):
    """Invalid or expired link token."""

    def __init__(self, message: str, *, reason: TokenReason = TokenReason.INVALID) -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(CampaignbotError):
    """Database error."""


class DeliveryError(CampaignbotError):
    """A message could not be handed to the transport.

    `code` keeps the SMTP reply code; `permanent` means retrying cannot help (5xx);
    `after_data` means the server may already have accepted the message.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        permanent: bool = False,
        after_data: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.after_data = after_data


class RelayError(DeliveryError):
    """The relay itself failed: connect, greeting, EHLO, TLS or AUTH; no recipient was tried.

    Not any delivery's fault, so never permanent and never counted as an attempt:
    the sender pauses instead (a 504 to EHLO or a 535 to AUTH is fixed by the
    operator, not by retrying each recipient until it is marked failed).
    """
