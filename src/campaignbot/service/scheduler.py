"""APScheduler 3 glue only: one date job per planned alert, plus the reconcile tick."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from campaignbot.campaign.planning import PlannedAlert

logger = logging.getLogger(__name__)

RECONCILE_JOB = "reconcile"
#: APScheduler drops a job that wakes later than this after its run time; the ledger
#: (via the reconcile tick) decides about lateness, so be generous here.
MISFIRE_GRACE_S = 6 * 3600


@dataclass(frozen=True)
class SyncResult:
    added: int
    moved: int
    removed: int


class AlertScheduler:
    """Wakes the service when an alert falls due; the ledger decides what to send.

    Job ids are the alert keys (`event:reminder`), so a reload replaces a job in
    place (`replace_existing`) instead of duplicating it. Every job calls the same
    `on_due(reason)` callback (the service's `tick`), which fires whatever is due and
    not yet fired; `reason` only names the wake-up in logs and /healthz.
    """

    def __init__(
        self, on_due: Callable[[str], Awaitable[None]], *, reconcile_s: float = 30
    ) -> None:
        self._on_due = on_due
        self._reconcile_s = reconcile_s
        self._scheduler = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "misfire_grace_time": MISFIRE_GRACE_S},
        )
        self._due: dict[str, datetime] = {}

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        # The reconcile tick covers wake-ups APScheduler 3 can miss (after add_job while
        # sleeping, across DST, after a suspend): it fires anything due but not fired.
        self._scheduler.add_job(
            self._on_due,
            IntervalTrigger(seconds=self._reconcile_s),
            args=["reconcile tick"],
            id=RECONCILE_JOB,
            replace_existing=True,
        )
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def sync(self, alerts: Iterable[PlannedAlert], *, now: datetime) -> SyncResult:
        """Make the jobs match the future alerts: add new, move changed, drop gone."""
        wanted = {a.key: a.due_utc for a in alerts if a.due_utc > now}
        added = moved = removed = 0
        for key in set(self._due) - set(wanted):
            if self._scheduler.get_job(key) is not None:
                self._scheduler.remove_job(key)
            removed += 1
        for key, due in wanted.items():
            if self._due.get(key) == due and self._scheduler.get_job(key) is not None:
                continue
            moved += key in self._due
            added += key not in self._due
            self._scheduler.add_job(
                self._on_due,
                DateTrigger(run_date=due),
                args=[f"alert {key} due"],
                id=key,
                replace_existing=True,
            )
        self._due = wanted
        return SyncResult(added, moved, removed)

    def jobs(self) -> dict[str, datetime]:
        """Alert key -> due time of every scheduled alert job."""
        return dict(self._due)

    def next_due(self) -> tuple[str, datetime] | None:
        """The nearest alert job, for logs and /healthz."""
        if not self._due:
            return None
        key = min(self._due, key=lambda k: self._due[k])
        return key, self._due[key]
