"""Lifecycle metrics (names are a contract: docs/contracts.md, "Receiver metrics").

``incidents_open`` belongs to the core's store snapshot; these are the response-time
histograms, breach and escalation counters, and the Watchdog heartbeat gauge. Each
measurement is claimed in the store first, so a cluster of replicas counts it once.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "voicedrive_receiver_"
LEVEL_LABELS = ("1", "2", "3", "4")
BREACH_KINDS = ("first_response", "response")
# From the 15-minute first response to the 4-hour Level 1 deadline, and beyond.
RESPONSE_BUCKETS = (60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)


class LifecycleMetrics:
    """The lifecycle's metrics, registered in the receiver's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.time_to_acknowledge = Histogram(
            PREFIX + "time_to_acknowledge_seconds",
            "Time from an incident opening to its first acknowledgement, by final level.",
            ["level"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.time_to_resolve = Histogram(
            PREFIX + "time_to_resolve_seconds",
            "Time from an incident opening to its resolution, by final level.",
            ["level"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.sla_breaches = Counter(
            PREFIX + "sla_breaches",
            "Incidents that missed the first-response target or their level's response deadline.",
            ["level", "kind"],
            registry=registry,
        )
        self.escalations = Counter(
            PREFIX + "escalations",
            "Incidents escalated one level because nobody acknowledged them in time.",
            ["from_level", "to_level"],
            registry=registry,
        )
        self.watchdog_last_seen = Gauge(
            PREFIX + "watchdog_last_seen_timestamp_seconds",
            "When Alertmanager's Watchdog heartbeat last arrived (0: never).",
            registry=registry,
        )
        for level in LEVEL_LABELS:
            self.time_to_acknowledge.labels(level=level)
            self.time_to_resolve.labels(level=level)
            for kind in BREACH_KINDS:
                self.sla_breaches.labels(level=level, kind=kind)
        for low in ("1", "2", "3"):
            self.escalations.labels(from_level=low, to_level=str(int(low) + 1))
