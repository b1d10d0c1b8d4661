"""What operators watch: Prometheus metrics (`/metrics` on the admin listener).

Metrics use one registry per app, read from the ledger and the subscriber store.

Counts that live in the database (deliveries by status, queue depth, alerts) are
queried on each scrape, so every process reports the same shared truth and nothing
drifts after a restart. The send latency histogram is fed from the sender's recent
latencies, which only the process that sent knows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from campaignbot import __version__
from campaignbot.delivery.ledger import Ledger, LedgerCounts
from campaignbot.delivery.relay_health import RelayHealth
from campaignbot.delivery.sender import SenderStats
from campaignbot.storage.states import AlertState, DeliveryStatus
from campaignbot.subscribers.model import SubscriberStatus
from campaignbot.subscribers.store import SubscriberStore

#: hand-over to an SMTP relay: milliseconds on a LAN, seconds on a slow relay
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass
class Scrape:
    """What the database and the service said at the last scrape."""

    ledger: LedgerCounts = field(default_factory=lambda: LedgerCounts({}, 0, 0, None, {}))
    subscribers: dict[str, int] = field(default_factory=dict)
    next_alert_in_s: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricsSources:
    """Where the numbers come from: the ledger and store (shared), this process's sender."""

    ledger: Ledger
    store: SubscriberStore
    stats: Callable[[], SenderStats]
    next_due: Callable[[], tuple[str, datetime] | None]
    clock: Callable[[], datetime]
    #: the SMTP relay's state from real outcomes (None for the Maildir outbox)
    relay: RelayHealth | None = None


class _SnapshotCollector(Collector):
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.scrape
        counts = snap.ledger
        by_status = GaugeMetricFamily(
            "campaignbot_deliveries",
            "Deliveries in the ledger by status (all processes).",
            labels=["status"],
        )
        for status in sorted({*DeliveryStatus, *counts.deliveries}):
            by_status.add_metric([status], counts.deliveries.get(status, 0))
        yield by_status
        yield GaugeMetricFamily(
            "campaignbot_queue_depth",
            "Deliveries due now and not yet sent (pending, retry or uncertain).",
            value=counts.queue_depth,
        )
        yield GaugeMetricFamily(
            "campaignbot_uncertain_deliveries",
            "Deliveries whose outcome was unknown at some point (possible duplicates).",
            value=counts.uncertain,
        )
        yield GaugeMetricFamily(
            "campaignbot_stale_deliveries",
            "Deliveries skipped because their event had started (reason stale).",
            value=counts.stale,
        )
        if counts.oldest_open_age_s is not None:
            yield GaugeMetricFamily(
                "campaignbot_oldest_open_delivery_age_seconds",
                "Age of the oldest delivery not yet finished.",
                value=counts.oldest_open_age_s,
            )
        fired = GaugeMetricFamily(
            "campaignbot_alerts",
            "Alerts and notices in the ledger: fired (deliveries written) or skipped (too late).",
            labels=["status"],
        )
        for status in sorted({*AlertState, *counts.alerts}):
            fired.add_metric([status], counts.alerts.get(status, 0))
        yield fired
        subs = GaugeMetricFamily(
            "campaignbot_subscribers", "Subscribers by status.", labels=["status"]
        )
        for status in sorted({*SubscriberStatus, *snap.subscribers}):
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
        yield from _relay_metrics(self._metrics.sources.relay)
        info = GaugeMetricFamily(
            "campaignbot_info", "campaignbot version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info


def _relay_metrics(relay: RelayHealth | None) -> Iterator[Metric]:
    """The relay's health, read live (it lives in this process's memory)."""
    if relay is None:
        return
    if relay.up is not None:
        yield GaugeMetricFamily(
            "campaignbot_relay_up",
            "1 while the SMTP relay works, 0 while it is down.",
            value=int(relay.up),
        )
    yield GaugeMetricFamily(
        "campaignbot_relay_consecutive_failures",
        "Relay failures (connect, TLS, EHLO, AUTH) in a row since the last success.",
        value=relay.consecutive_failures,
    )
    for name, at in (("success", relay.last_success_at), ("failure", relay.last_failure_at)):
        if at is not None:
            yield GaugeMetricFamily(
                f"campaignbot_relay_last_{name}_timestamp_seconds",
                f"When the relay's last {name} happened (Unix time).",
                value=at,
            )


class ServiceMetrics:
    """The `/metrics` registry of one app (never the global default registry).

    A scrape runs a few aggregate queries; its result is reused for `cache_s`, so a
    busy or hostile scraper costs the database at most one scrape per window.
    """

    def __init__(self, sources: MetricsSources, *, cache_s: float = 5.0) -> None:
        self.sources = sources
        self.cache_s = cache_s
        self.registry = CollectorRegistry(auto_describe=False)
        self.scrape = Scrape()
        self.latency = Histogram(
            "campaignbot_send_latency_seconds",
            "Time to hand one message to the transport (successful sends, this process).",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(self))
        self._latencies_seen = 0
        self._scraped_at: datetime | None = None
        self._lock = asyncio.Lock()

    def _feed_latencies(self, stats: SenderStats) -> None:
        # The sender keeps its most recent latencies (a bounded deque) and counts every
        # success; observe the ones added since the last scrape. If more than the deque
        # holds were sent in between, the oldest of them are not observed.
        new = stats.sent - self._latencies_seen
        if new < 0:  # the sender was replaced
            new = stats.sent
        recent = list(stats.latencies_s)
        for latency_s in recent[max(0, len(recent) - new) :] if new else []:
            self.latency.observe(latency_s)
        self._latencies_seen = stats.sent

    async def _read(self, now: datetime) -> Scrape:
        src = self.sources
        scrape = Scrape(
            ledger=await src.ledger.counts(now=now), subscribers=await src.store.count_by_status()
        )
        nxt = src.next_due()
        if nxt is not None:
            scrape.next_alert_in_s = (nxt[1] - now).total_seconds()
        stats = src.stats()
        scrape.outcomes = {
            "sent": stats.sent,
            "failed": stats.failed,
            "uncertain": stats.uncertain,
            "retry": stats.retried,
            "skipped": stats.skipped,
        }
        return scrape

    async def render(self) -> bytes:
        """The exposition text; the shared counts are at most `cache_s` old."""
        async with self._lock:
            now = self.sources.clock()
            fresh = self._scraped_at is not None and (
                0 <= (now - self._scraped_at).total_seconds() < self.cache_s
            )
            if not fresh:
                self.scrape = await self._read(now)
                self._scraped_at = now
                self._feed_latencies(self.sources.stats())
            return generate_latest(self.registry)
