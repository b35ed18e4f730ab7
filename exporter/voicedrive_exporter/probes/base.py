"""The one contract every probe fits, and the small value objects it returns.

A probe is ``async def probe(settings, *, deps) -> ProbeResult``: it never raises for a failing
target (a failure is a result with ``success=False`` and a bounded reason), it finishes within
``settings.schedule.timeout`` on its own, and it reports the same series shape whether the
target is up or down so that a failed run replaces every value of the previous one.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from voicedrive_common.clock import Clock

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One value of one metric with its labels (label order as in the metric's spec)."""

    name: str
    labels: Labels
    value: float


@dataclass(frozen=True)
class ProbeResult:
    """What one run of a probe found.

    ``reasons`` holds one bounded reason per failure (counted in ``voicedrive_probe_errors_total``);
    ``observations`` are histogram observations added to the running histograms.
    """

    success: bool
    samples: tuple[Sample, ...] = ()
    reasons: tuple[str, ...] = ()
    observations: tuple[Sample, ...] = ()


class SystemStats(Protocol):
    """The slice of psutil the host probe reads (injectable so tests can pin the numbers)."""

    def cpu_times(self) -> Any:
        """Cumulative CPU times (psutil.cpu_times)."""
        ...

    def virtual_memory(self) -> Any:
        """Memory figures (psutil.virtual_memory)."""
        ...


@dataclass(frozen=True)
class ProbeDeps:
    """Everything external a probe may use, injected."""

    session: aiohttp.ClientSession
    clock: Clock
    system: SystemStats


@dataclass(frozen=True)
class ProbeKind:
    """A probe module in the table: how to run it and what a run that never finished reports."""

    name: str
    run: "ProbeFn"
    failure: Callable[[Any, str], ProbeResult]


class ProbeFn(Protocol):
    """``async def probe(settings, *, deps) -> ProbeResult``."""

    def __call__(self, settings: Any, *, deps: ProbeDeps) -> Awaitable[ProbeResult]:
        """Run the probe once."""
        ...


def inner_deadline(timeout: float) -> float:
    """Seconds a probe gives its own work, leaving room to report before the hard timeout."""
    return max(timeout - min(0.5, max(0.1, timeout * 0.1)), timeout * 0.5)


def sample(name: str, value: float, **labels: str) -> Sample:
    """A Sample with labels in keyword order."""
    return Sample(name, tuple(labels.items()), float(value))


def merge(results: Sequence[ProbeResult]) -> ProbeResult:
    """Several sub-results (one per endpoint or database) as one probe result."""
    return ProbeResult(
        success=all(r.success for r in results),
        samples=tuple(s for r in results for s in r.samples),
        reasons=tuple(x for r in results for x in r.reasons),
        observations=tuple(o for r in results for o in r.observations),
    )
