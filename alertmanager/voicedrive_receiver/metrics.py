"""The receiver's metrics (names are a contract: docs/contracts.md, "Receiver metrics").

Counters and histograms are updated where things happen; gauges that describe the store
(outbox depth, oldest pending, open incidents) are a snapshot refreshed by the worker and read
by a custom collector, so a scrape never queries the database.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PREFIX = "voicedrive_receiver_"
WEBHOOK_OUTCOMES = ("accepted", "invalid", "too_large", "unauthorized", "unavailable", "backlogged")
PROCESSING_OUTCOMES = ("stored", "duplicate", "elsewhere", "failed")
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DELIVERY_OUTCOMES = ("success", "retry", "dead_letter")
RECONCILE_OUTCOMES = ("found", "not_found", "error")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class StoreSnapshot:
    """Store-derived gauges at one moment."""

    # channel -> (depth, oldest pending age in seconds)
    outbox: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    incidents_open: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JournalSnapshot:
    """Webhook journal gauges at one moment (refreshed by the processor)."""

    pending: int = 0
    oldest_age: float = 0.0
    failed: int = 0


class _SnapshotCollector(Collector):
    def __init__(self, metrics: "ReceiverMetrics") -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        snap = self._metrics.snapshot
        depth = GaugeMetricFamily(
            PREFIX + "outbox_depth", "Outbox messages not yet delivered.", labels=["channel"]
        )
        age = GaugeMetricFamily(
            PREFIX + "outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered outbox message.",
            labels=["channel"],
        )
        for channel in sorted(set(self._metrics.channels) | set(snap.outbox)):
            pending, oldest = snap.outbox.get(channel, (0, 0.0))
            depth.add_metric([channel], pending)
            age.add_metric([channel], oldest)
        incidents = GaugeMetricFamily(
            PREFIX + "incidents_open", "Incidents open or acknowledged.", labels=["level"]
        )
        for level in (1, 2, 3, 4):
            incidents.add_metric([str(level)], snap.incidents_open.get(level, 0))
        journal = self._metrics.journal
        yield GaugeMetricFamily(
            PREFIX + "ingest_backlog",
            "Acknowledged notifications not yet processed into incidents and the outbox.",
            value=journal.pending,
        )
        yield GaugeMetricFamily(
            PREFIX + "ingest_backlog_oldest_age_seconds",
            "Age of the oldest acknowledged notification not yet processed.",
            value=journal.oldest_age,
        )
        yield GaugeMetricFamily(
            PREFIX + "ingest_failed",
            "Acknowledged notifications that could not be processed (kept in the journal).",
            value=journal.failed,
        )
        yield depth
        yield age
        yield incidents


class ReceiverMetrics:
    """Every metric of the receiver core in its own registry."""

    def __init__(self, channels: Iterable[str] = (), registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.channels = tuple(channels)
        self.snapshot = StoreSnapshot()
        self.journal = JournalSnapshot()
        r = self.registry
        self.webhooks = Counter(
            PREFIX + "webhooks_received",
            "Webhook requests by outcome.",
            ["outcome"],
            registry=r,
        )
        self.alerts = Counter(
            PREFIX + "alerts_received",
            "Alerts in accepted notifications by level and status.",
            ["level", "status"],
            registry=r,
        )
        self.level_defaulted = Counter(
            PREFIX + "level_defaulted",
            "Alerts that got the default level (no valid level label, no rule matched).",
            registry=r,
        )
        self.deliveries = Counter(
            PREFIX + "deliveries",
            "Delivery attempts by channel and outcome.",
            ["channel", "outcome"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            PREFIX + "delivery_latency_seconds",
            "Time from a notification being accepted to its message being delivered.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            PREFIX + "dead_letters",
            "Messages given up after the configured attempts.",
            ["channel"],
            registry=r,
        )
        self.duplicates = Counter(
            PREFIX + "duplicates_suppressed",
            "Notifications already stored (Alertmanager retries, HA peers, repeats).",
            registry=r,
        )
        self.processed = Counter(
            PREFIX + "notifications_processed",
            "Journaled notifications processed, by outcome (elsewhere: another replica did).",
            ["outcome"],
            registry=r,
        )
        self.processing_delay = Histogram(
            PREFIX + "processing_delay_seconds",
            "Time from a notification being acknowledged to it being processed.",
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.reconciliations = Counter(
            PREFIX + "reconciliations",
            "Lookups of in-doubt messages at the upstream before resending, by outcome.",
            ["channel", "outcome"],
            registry=r,
        )
        # Looked up once: ``labels()`` costs about 2 us per call, on every webhook.
        self._webhook_outcomes = {o: self.webhooks.labels(outcome=o) for o in WEBHOOK_OUTCOMES}
        for outcome in PROCESSING_OUTCOMES:
            self.processed.labels(outcome=outcome)
        for channel in self.channels:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(channel=channel, outcome=outcome)
            self.dead_letters.labels(channel=channel)
            for outcome in RECONCILE_OUTCOMES:
                self.reconciliations.labels(channel=channel, outcome=outcome)
            self.delivery_latency.labels(channel=channel)
        r.register(_SnapshotCollector(self))

    def webhook(self, outcome: str) -> None:
        """Count a webhook request's outcome (one of ``WEBHOOK_OUTCOMES``)."""
        self._webhook_outcomes[outcome].inc()
