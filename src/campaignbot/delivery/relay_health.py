"""The SMTP relay's health, judged from what really happened to sessions and sends.

No probe of its own: the transport reports every session it could or could not
open, every message handed over and every NOOP, and this object keeps the last
success, the last failure (with its reason) and how many failures came in a row.
It logs once at WARNING when the relay goes down, and once at INFO when it comes
back, so an outage is visible without a line per delivery.

Wiring (the admin listener): `/healthz` shows `as_dict()` as the relay's detail
(and may report "degraded" while `up` is False); `/metrics` exports
`consecutive_failures`, `up` and the two timestamps as gauges. `/readyz` ignores it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: seconds since the epoch; the wall clock, so the timestamps mean something to an operator
WallClock = Callable[[], float]


@dataclass
class RelayHealth:
    """Up/down state of one relay from real outcomes; see the module docstring.

    `down_after`: failures in a row that make the relay count as down.
    """

    where: str
    down_after: int = 1
    clock: WallClock = time.time
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_failure: str | None = None
    consecutive_failures: int = 0
    #: None until the first outcome: an idle service has not seen the relay yet
    up: bool | None = None

    def success(self) -> None:
        """A session opened, a message was accepted or a NOOP answered."""
        self.last_success_at = self.clock()
        self.consecutive_failures = 0
        if self.up is False:
            logger.info(
                "%s: SMTP relay is back up",
                self.where,
                extra={"action": "relay_up", "relay": self.where},
            )
        self.up = True

    def failure(self, reason: str) -> None:
        """The relay itself failed (connect, greeting, EHLO, TLS, AUTH, a dropped session).

        A recipient refused by a working relay is not a relay failure: do not report it here.
        """
        self.last_failure_at = self.clock()
        self.last_failure = reason
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.down_after and self.up is not False:
            self.up = False
            logger.warning(
                "%s: SMTP relay is down: %s",
                self.where,
                reason,
                extra={"action": "relay_down", "relay": self.where, "reason": reason},
            )

    @property
    def is_down(self) -> bool:
        """True once the relay has failed `down_after` times in a row and not recovered."""
        return self.up is False

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view for /healthz (no secrets: reasons never contain credentials)."""
        return {
            "relay": self.where,
            "status": {None: "unknown", True: "up", False: "down"}[self.up],
            "last_success_at": self.last_success_at,
            "last_failure_at": self.last_failure_at,
            "last_failure": self.last_failure,
            "consecutive_failures": self.consecutive_failures,
        }
