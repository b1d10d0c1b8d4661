"""What the dashboard and the API read and change, as small ports the service fills in.

`web` must not import `delivery`, so the ledger is seen through `AlertReader`, a
Protocol that `delivery.ledger.Ledger` satisfies structurally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from campaignbot.email.snapshot import Snapshot
from campaignbot.storage.database import Database
from campaignbot.subscribers.store import SubscriberStore


class AlertLine(Protocol):
    """One alert's counts (the ledger's `AlertStatus`)."""

    @property
    def key(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def reminder(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def due(self) -> datetime: ...
    @property
    def fired_at(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def sent(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def retry(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def uncertain(self) -> int: ...
    @property
    def skipped(self) -> int: ...


class Summary(Protocol):
    @property
    def alerts(self) -> Sequence[AlertLine]: ...


class AlertReader(Protocol):
    """What the dashboard reads from the ledger."""

    async def status_summary(self, *, now: datetime) -> Summary: ...


class MailSender(Protocol):
    """The transport's `send` (the API's double opt-in mail)."""

    async def __call__(self, message: EmailMessage, *, sender: str, recipient: str) -> str: ...


Report = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


@dataclass(frozen=True)
class DashboardContext:
    """The dashboard's ports; built by the service (`Service.admin_context`)."""

    users_file: Path
    #: signs the session cookies (the link secret, with its own salt)
    secret: str
    #: the template folder; the dashboard's pages are in its `admin/` folder
    templates: Path
    snapshot: Callable[[], Snapshot]
    clock: Callable[[], datetime]
    alerts: AlertReader
    store: SubscriberStore
    db: Database
    health: Report
    send_mail: MailSender
    #: the campaign file, and its check as a reload would make it (raises InvalidInputError)
    config_path: Path
    check_config: Callable[[], Snapshot]
    secure_cookies: bool = False
