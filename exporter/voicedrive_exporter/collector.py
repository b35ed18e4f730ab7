"""A prometheus_client custom collector that renders one snapshot, and the cached exposition.

``collect()`` reads the snapshot reference once; rendering is cached per snapshot version, so
any number of scrapers between two probe runs cost one render in total.
"""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from voicedrive_exporter.metrics import SPECS
from voicedrive_exporter.snapshot import Snapshot

Family = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily


class SnapshotCollector:
    """Yields every metric family of the snapshot returned by ``source``."""

    def __init__(self, source: Callable[[], Snapshot], *, version: str) -> None:
        self._source = source
        self._version = version

    def collect(self) -> Iterator[Metric]:
        """The snapshot as metric families, in spec order, empty families left out."""
        snap = self._source()
        families: dict[str, Family] = {}

        def family(name: str) -> Family:
            if name not in families:
                spec = SPECS[name]
                cls = {
                    "gauge": GaugeMetricFamily,
                    "counter": CounterMetricFamily,
                    "histogram": HistogramMetricFamily,
                }[spec.kind]
                families[name] = cls(name, spec.help, labels=spec.labels)
            return families[name]

        def gauge(name: str, labels: list[str], value: float) -> None:
            fam = family(name)
            assert isinstance(fam, GaugeMetricFamily)
            fam.add_metric(labels, value)

        gauge("voicedrive_exporter_build_info", [self._version], 1)
        gauge("voicedrive_exporter_config_last_reload_successful", [], 1 if snap.reload_ok else 0)
        for probe in snap.probes:
            record = snap.records.get(probe)
            if record is None:
                continue
            gauge("voicedrive_probe_success", [probe], 1 if record.result.success else 0)
            gauge("voicedrive_probe_last_run_timestamp_seconds", [probe], record.finished_at)
            for reason in dict.fromkeys(record.result.reasons):
                gauge("voicedrive_probe_failure_info", [probe, reason], 1)
            for s in record.result.samples:
                gauge(s.name, [v for _, v in s.labels], s.value)
        for (name, labels), state in snap.histograms.items():
            fam = family(name)
            assert isinstance(fam, HistogramMetricFamily)
            bounds = [*(_le(b) for b in SPECS[name].buckets), "+Inf"]
            fam.add_metric(
                [v for _, v in labels],
                list(zip(bounds, state.buckets, strict=True)),
                state.total,
            )
        for (probe, reason), count in snap.errors.items():
            fam = family("voicedrive_probe_errors")
            assert isinstance(fam, CounterMetricFamily)
            fam.add_metric([probe, reason], count)
        for probe, count in snap.skipped.items():
            fam = family("voicedrive_probe_skipped")
            assert isinstance(fam, CounterMetricFamily)
            fam.add_metric([probe], count)
        order = list(SPECS)
        yield from sorted(families.values(), key=lambda f: order.index(_spec_name(f)))


def _spec_name(fam: Metric) -> str:
    return fam.name if fam.name in SPECS else fam.name.removesuffix("_total")


def _le(bound: float) -> str:
    return repr(float(bound))


class Exposition:
    """The text exposition of the store's snapshot, rendered at most once per version."""

    def __init__(self, source: Callable[[], Snapshot], *, version: str) -> None:
        self._source = source
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(SnapshotCollector(self._pinned, version=version))
        self._pinned_snapshot: Snapshot | None = None
        self._cache: tuple[int, bytes] | None = None

    def _pinned(self) -> Snapshot:
        assert self._pinned_snapshot is not None
        return self._pinned_snapshot

    def render(self) -> bytes:
        """The exposition bytes for the current snapshot."""
        snap = self._source()
        if self._cache is not None and self._cache[0] == snap.version:
            return self._cache[1]
        self._pinned_snapshot = snap
        body = generate_latest(self._registry)
        self._cache = (snap.version, body)
        return body
