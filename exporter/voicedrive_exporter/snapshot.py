"""The immutable snapshot a scrape renders, and the store that swaps it atomically.

Probes never touch a snapshot: the scheduler hands each result to the store, which builds a
new snapshot and replaces the reference in one assignment. A scrape reads one reference, so
it always sees a consistent picture and never waits for a probe.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from voicedrive_exporter.metrics import SPECS
from voicedrive_exporter.probes.base import Labels, ProbeResult


def _frozen() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ProbeRecord:
    """The latest result of one probe and when its run finished (Unix seconds)."""

    result: ProbeResult
    finished_at: float


@dataclass(frozen=True)
class HistogramState:
    """Cumulative bucket counts (one per bucket, +Inf last), sum and count."""

    buckets: tuple[int, ...]
    total: float = 0.0
    count: int = 0

    def observe(self, bounds: tuple[float, ...], value: float) -> "HistogramState":
        """A new state with ``value`` added."""
        counts = tuple(
            n + (1 if value <= bound else 0)
            for n, bound in zip(self.buckets, (*bounds, float("inf")), strict=True)
        )
        return HistogramState(counts, self.total + value, self.count + 1)


@dataclass(frozen=True)
class Snapshot:
    """Everything /metrics shows; ``version`` changes with every replacement."""

    version: int = 0
    probes: tuple[str, ...] = ()
    records: Mapping[str, ProbeRecord] = field(default_factory=_frozen)
    errors: Mapping[tuple[str, str], int] = field(default_factory=_frozen)
    skipped: Mapping[str, int] = field(default_factory=_frozen)
    histograms: Mapping[tuple[str, Labels], HistogramState] = field(default_factory=_frozen)
    reload_ok: bool = True

    @property
    def ready(self) -> bool:
        """Whether every configured probe has finished at least one run."""
        return all(name in self.records for name in self.probes)


class SnapshotStore:
    """Holds the current snapshot; every change replaces it (single event loop, no locks)."""

    def __init__(self) -> None:
        self._snapshot = Snapshot()

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot."""
        return self._snapshot

    def configure(self, probes: Iterable[str]) -> None:
        """Set the configured probes; every series of a probe no longer configured disappears."""
        names = tuple(probes)
        old = self._snapshot
        self._swap(
            probes=names,
            records=MappingProxyType({k: v for k, v in old.records.items() if k in names}),
            skipped=MappingProxyType({n: old.skipped.get(n, 0) for n in names}),
            errors=MappingProxyType({k: v for k, v in old.errors.items() if k[0] in names}),
        )

    def retain_histograms(self, endpoints: Iterable[str]) -> None:
        """Drop the histograms of API endpoints that are no longer configured."""
        keep = set(endpoints)
        self._swap(
            histograms=MappingProxyType(
                {
                    k: v
                    for k, v in self._snapshot.histograms.items()
                    if dict(k[1]).get("endpoint") in keep
                }
            )
        )

    def record(self, probe: str, result: ProbeResult, finished_at: float) -> None:
        """Make ``result`` the latest of ``probe``, counting its failures and observations."""
        old = self._snapshot
        records = dict(old.records)
        records[probe] = ProbeRecord(result, finished_at)
        errors = dict(old.errors)
        for reason in result.reasons:
            errors[(probe, reason)] = errors.get((probe, reason), 0) + 1
        histograms = old.histograms
        if result.observations:
            hist = dict(histograms)
            for obs in result.observations:
                bounds = SPECS[obs.name].buckets
                key = (obs.name, obs.labels)
                state = hist.get(key) or HistogramState((0,) * (len(bounds) + 1))
                hist[key] = state.observe(bounds, obs.value)
            histograms = MappingProxyType(hist)
        self._swap(
            records=MappingProxyType(records),
            errors=MappingProxyType(errors),
            histograms=histograms,
        )

    def skip(self, probe: str) -> None:
        """Count a run of ``probe`` skipped because the previous one was still in flight."""
        skipped = dict(self._snapshot.skipped)
        skipped[probe] = skipped.get(probe, 0) + 1
        self._swap(skipped=MappingProxyType(skipped))

    def reloaded(self, ok: bool) -> None:
        """Remember whether the last config reload succeeded."""
        self._swap(reload_ok=ok)

    def _swap(self, **changes: Any) -> None:
        self._snapshot = replace(self._snapshot, version=self._snapshot.version + 1, **changes)
