"""What operators watch: Prometheus metrics (`/metrics`) and the health report (`/healthz`).

Metrics use one registry per app, read from the ledger at scrape time.

Counts that live in the database (deliveries by status, queue depth, alerts) are
queried on each scrape, so every process reports the same shared truth and nothing
drifts after a restart. The send latency histogram is fed from the sender's recent
latencies, which only the process that sent knows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select

from campaignbot import __version__
from campaignbot.errors import CampaignbotError
from campaignbot.storage.tables import alerts, deliveries, subscribers

if TYPE_CHECKING:
    from campaignbot.service.runtime import Service

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

DELIVERY_STATUSES = ("pending", "sending", "retry", "sent", "failed", "uncertain", "skipped")
SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced")
#: hand-over to an SMTP relay: milliseconds on a LAN, seconds on a slow relay
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass
class Snapshot:
    """What the database and the service said at the last scrape."""

    deliveries: dict[str, int] = field(default_factory=dict)
    queue_depth: int = 0
    uncertain: int = 0
    oldest_open_age_s: float | None = None
    alerts: dict[str, int] = field(default_factory=dict)
    subscribers: dict[str, int] = field(default_factory=dict)
    next_alert_in_s: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)


async def read_snapshot(service: Service, *, now: datetime) -> Snapshot:
    """Query the shared counts (a few aggregate queries, one connection)."""
    d = deliveries.c
    due = d.status.in_(("pending", "retry", "uncertain")) & (d.next_attempt_at <= now)
    snap = Snapshot()
    async with service.db.engine.connect() as conn:
        rows = await conn.execute(select(d.status, func.count()).group_by(d.status))
        snap.deliveries = {str(s): int(n) for s, n in rows}
        snap.queue_depth = int((await conn.execute(select(func.count()).where(due))).scalar_one())
        ever_uncertain = or_(d.was_uncertain.is_(True), d.status == "uncertain")
        query = select(func.count()).select_from(deliveries).where(ever_uncertain)
        snap.uncertain = int((await conn.execute(query)).scalar_one())
        open_ = d.status.in_(("pending", "sending", "retry", "uncertain"))
        oldest = (await conn.execute(select(func.min(d.created_at)).where(open_))).scalar()
        rows = await conn.execute(select(alerts.c.status, func.count()).group_by(alerts.c.status))
        snap.alerts = {str(s): int(n) for s, n in rows}
        s = subscribers.c
        rows = await conn.execute(select(s.status, func.count()).group_by(s.status))
        snap.subscribers = {str(st): int(n) for st, n in rows}
    if oldest is not None:
        snap.oldest_open_age_s = max(0.0, (now - oldest).total_seconds())
    nxt = service.scheduler.next_due()
    if nxt is not None:
        snap.next_alert_in_s = (nxt[1] - now).total_seconds()
    stats = service.sender.stats
    snap.outcomes = {
        "sent": stats.sent,
        "failed": stats.failed,
        "uncertain": stats.uncertain,
        "retry": stats.retried,
        "skipped": stats.skipped,
    }
    return snap


class _SnapshotCollector(Collector):
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot
        by_status = GaugeMetricFamily(
            "campaignbot_deliveries",
            "Deliveries in the ledger by status (all processes).",
            labels=["status"],
        )
        for status in sorted({*DELIVERY_STATUSES, *snap.deliveries}):
            by_status.add_metric([status], snap.deliveries.get(status, 0))
        yield by_status
        yield GaugeMetricFamily(
            "campaignbot_queue_depth",
            "Deliveries due now and not yet sent (pending, retry or uncertain).",
            value=snap.queue_depth,
        )
        yield GaugeMetricFamily(
            "campaignbot_uncertain_deliveries",
            "Deliveries whose outcome was unknown at some point (possible duplicates).",
            value=snap.uncertain,
        )
        if snap.oldest_open_age_s is not None:
            yield GaugeMetricFamily(
                "campaignbot_oldest_open_delivery_age_seconds",
                "Age of the oldest delivery not yet finished.",
                value=snap.oldest_open_age_s,
            )
        fired = GaugeMetricFamily(
            "campaignbot_alerts",
            "Alerts and notices in the ledger: fired (deliveries written) or skipped (too late).",
            labels=["status"],
        )
        for status in sorted({"fired", "skipped", *snap.alerts}):
            fired.add_metric([status], snap.alerts.get(status, 0))
        yield fired
        subs = GaugeMetricFamily(
            "campaignbot_subscribers", "Subscribers by status.", labels=["status"]
        )
        for status in sorted({*SUBSCRIBER_STATUSES, *snap.subscribers}):
            subs.add_metric([status], snap.subscribers.get(status, 0))
        yield subs
        if snap.next_alert_in_s is not None:
            yield GaugeMetricFamily(
                "campaignbot_next_alert_seconds",
                "Seconds until the next scheduled alert falls due (negative: overdue).",
                value=snap.next_alert_in_s,
            )
        outcomes = CounterMetricFamily(
            "campaignbot_sender_outcomes",
            "Delivery outcomes recorded by this process's sender since it started.",
            labels=["outcome"],
        )
        for outcome, count in sorted(snap.outcomes.items()):
            outcomes.add_metric([outcome], count)
        yield outcomes
        info = GaugeMetricFamily(
            "campaignbot_info", "campaignbot version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info


class ServiceMetrics:
    """The `/metrics` registry of one app (never the global default registry)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self.snapshot = Snapshot()
        self.latency = Histogram(
            "campaignbot_send_latency_seconds",
            "Time to hand one message to the transport (successful sends, this process).",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(self))
        self._latencies_seen = 0
        self._lock = asyncio.Lock()

    def _feed_latencies(self) -> None:
        # The sender keeps its most recent latencies (a bounded deque) and counts every
        # success; observe the ones added since the last scrape. If more than the deque
        # holds were sent in between, the oldest of them are not observed.
        stats = self.service.sender.stats
        new = stats.sent - self._latencies_seen
        if new < 0:  # the sender was replaced
            new = stats.sent
        recent = list(stats.latencies_s)
        for latency_s in recent[max(0, len(recent) - new) :] if new else []:
            self.latency.observe(latency_s)
        self._latencies_seen = stats.sent

    async def render(self) -> bytes:
        """The exposition text, with the shared counts read now."""
        async with self._lock:
            self.snapshot = await read_snapshot(self.service, now=self.service.clock())
            self._feed_latencies()
            return generate_latest(self.registry)


class Health:
    """`/healthz`: scheduler, database and transport; the SMTP check is cached."""

    def __init__(self, service: Service, *, cache_s: float, require_scheduler: bool) -> None:
        self._service = service
        self._cache_s = cache_s
        self._require_scheduler = require_scheduler
        self._transport: tuple[float, str | None] | None = None
        self._lock = asyncio.Lock()

    async def _transport_error(self) -> str | None:
        async with self._lock:
            now = time.monotonic()
            if self._transport is None or now - self._transport[0] >= self._cache_s:
                try:
                    await asyncio.wait_for(self._service.transport.check(), timeout=15)
                    error = None
                except (CampaignbotError, OSError, TimeoutError) as err:
                    error = str(err) or type(err).__name__
                self._transport = (time.monotonic(), error)
            return self._transport[1]

    async def report(self) -> tuple[bool, dict[str, Any]]:
        service = self._service
        running = service.scheduler.running
        scheduler_ok = running or not self._require_scheduler
        try:
            await asyncio.wait_for(service.db.ping(), timeout=10)
            db_error = None
        except (CampaignbotError, OSError, TimeoutError) as err:
            db_error = str(err) or type(err).__name__
        transport_error = await self._transport_error()
        nxt = service.scheduler.next_due()
        now = service.clock()
        body: dict[str, Any] = {
            "scheduler": {"ok": scheduler_ok, "running": running},
            "database": {"ok": db_error is None, "error": db_error},
            "transport": {
                "ok": transport_error is None,
                "error": transport_error,
                "description": service.transport.description,
            },
            "next_alert": None
            if nxt is None
            else {
                "alert": nxt[0],
                "due": nxt[1].isoformat(),
                "in_s": round((nxt[1] - now).total_seconds()),
            },
        }
        ok = scheduler_ok and db_error is None and transport_error is None
        body = {"status": "ok" if ok else "fail", **body}
        return ok, body
