"""Health for the admin listener: `/livez`, `/readyz` (database and campaign) and `/healthz` (details).

Readiness is what a load balancer needs to send visitors to the sign-up page: the
database answers and a valid campaign is loaded. The relay's state is reported in
`/healthz` but never takes the pages offline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaignbot.delivery.transport import Transport
from campaignbot.errors import CampaignbotError


@dataclass(frozen=True)
class HealthSources:
    """The parts `/healthz` asks about."""

    db_ping: Callable[[], Awaitable[None]]
    campaign_loaded: Callable[[], bool]
    scheduler_running: Callable[[], bool]
    next_due: Callable[[], tuple[str, datetime] | None]
    transport: Transport
    clock: Callable[[], datetime]
    #: the bounce mailbox's last read (None: no mailbox configured)
    bounce_reading: Callable[[], dict[str, Any] | None] = lambda: None
    #: the last wake-up (tick) that failed and why, or None when the last one worked
    last_tick_error: Callable[[], dict[str, str] | None] = lambda: None


class Health:
    """The health reports; the transport check is cached for `cache_s`."""

    def __init__(self, sources: HealthSources, *, cache_s: float, require_scheduler: bool) -> None:
        self._src = sources
        self.cache_s = cache_s
        self._require_scheduler = require_scheduler
        self._transport: tuple[float, str | None] | None = None
        self._lock = asyncio.Lock()

    async def _transport_error(self) -> str | None:
        """The relay's state from real outcomes (RelayHealth); the transport's own check
        (a NOOP on a pooled session, within the connection cap; for the Maildir, that it
        is writable) only when nothing was heard from it for `cache_s`."""
        relay = self._src.transport.health
        heard_s = None if relay is None or not relay.up else relay.last_success_at
        if heard_s is not None and time.time() - heard_s < self.cache_s:
            return None  # messages handed over just now are the proof
        async with self._lock:
            now = time.monotonic()
            if self._transport is None or now - self._transport[0] >= self.cache_s:
                try:
                    await asyncio.wait_for(self._src.transport.check(), timeout=15)
                    error = None
                except (CampaignbotError, OSError, TimeoutError) as err:
                    error = str(err) or type(err).__name__
                self._transport = (time.monotonic(), error)
            return self._transport[1]

    async def _db_error(self) -> str | None:
        try:
            await asyncio.wait_for(self._src.db_ping(), timeout=10)
        except (CampaignbotError, OSError, TimeoutError) as err:
            return str(err) or type(err).__name__
        return None

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Database reachable and a valid campaign loaded."""
        db_error = await self._db_error()
        loaded = self._src.campaign_loaded()
        ok = db_error is None and loaded
        return ok, {
            "status": "ok" if ok else "fail",
            "database": {"ok": db_error is None, "error": db_error},
            "campaign": {"ok": loaded},
        }

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """Scheduler, database and transport, with details."""
        src = self._src
        running = src.scheduler_running()
        scheduler_ok = running or not self._require_scheduler
        db_error = await self._db_error()
        transport_error = await self._transport_error()
        nxt = src.next_due()
        now = src.clock()
        tick_error = src.last_tick_error()
        body: dict[str, Any] = {
            "scheduler": {"ok": scheduler_ok, "running": running},
            "tick": {"ok": tick_error is None, "last_error": tick_error},
            "database": {"ok": db_error is None, "error": db_error},
            "transport": {
                "ok": transport_error is None,
                "error": transport_error,
                "description": src.transport.description,
                "relay": None if src.transport.health is None else src.transport.health.as_dict(),
            },
            "bounce_mailbox": src.bounce_reading(),
            "next_alert": None
            if nxt is None
            else {
                "alert": nxt[0],
                "due": nxt[1].isoformat(),
                "in_s": round((nxt[1] - now).total_seconds()),
            },
        }
        ok = scheduler_ok and db_error is None and transport_error is None and tick_error is None
        return ok, {"status": "ok" if ok else "fail", **body}
