"""The service's bounce-mailbox job: read it every `BOUNCES__INTERVAL_S`, log what failed.

One pass is `delivery.bounces.reader.read_bounces_once` (which takes the PostgreSQL
advisory lock, so one process reads at a time); this module only repeats it and
keeps what the last pass did for `/healthz` and the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from campaignbot.delivery.bounces.reader import (
    ReadSummary,
    mailbox_from_settings,
    read_bounces_once,
)
from campaignbot.errors import CampaignbotError
from campaignbot.settings import Settings
from campaignbot.storage.database import Database

logger = logging.getLogger(__name__)


class BounceReading:
    """Reads the bounce mailbox now and then; `state()` says how the last pass went."""

    def __init__(self, db: Database, settings: Settings, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        # a bad IMAP URL is a ConfigError here, at start, not a minute later
        self._mailbox = mailbox_from_settings(settings)
        self.last_run_at: datetime | None = None
        self.last_error: str | None = None
        self.last_summary: ReadSummary | None = None

    @property
    def configured(self) -> bool:
        return self._mailbox is not None

    async def read_once(self) -> None:
        """One pass; a failure is logged (once per change of reason) and kept for health."""
        try:
            summary = await read_bounces_once(
                self._db, self._settings, clock=self._clock, mailbox=self._mailbox
            )
        except (CampaignbotError, OSError) as err:
            error = str(err) or type(err).__name__
            if error != self.last_error:
                logger.warning(
                    "bounce mailbox not read: %s (trying again every %gs)",
                    error,
                    self._settings.bounces.interval_s,
                    extra={"action": "bounces_read_failed", "reason": error},
                )
            self.last_error = error
        else:
            if self.last_error is not None:
                logger.info("bounce mailbox read again", extra={"action": "bounces_read_ok"})
            self.last_error, self.last_summary = None, summary
        self.last_run_at = self._clock()

    async def run(self, stop: asyncio.Event) -> None:
        """Read at once, then every interval, until `stop` is set."""
        if self._mailbox is None:
            return
        while not stop.is_set():
            await self.read_once()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.bounces.interval_s)

    def state(self) -> dict[str, Any] | None:
        """For `/healthz`: None when no mailbox is configured."""
        if self._mailbox is None:
            return None
        summary = self.last_summary
        return {
            "ok": self.last_error is None,
            "last_run_at": None if self.last_run_at is None else self.last_run_at.isoformat(),
            "last_error": self.last_error,
            "last_messages": None if summary is None else summary.messages,
        }
