"""Host probe: CPU and memory usage ratios via psutil.

CPU busy share is computed from two ``cpu_times()`` readings taken ``cpu_sample_window`` apart
inside the same run, so the first run is as real as every other one (psutil's
``cpu_percent(interval=None)`` returns a meaningless 0.0 on its first call). The readings run
in a worker thread so that /proc reads never block the event loop.
"""

import asyncio
from typing import Any

from voicedrive_exporter.config import HostSettings
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult, sample

_IDLE_FIELDS = ("idle", "iowait")


def busy_ratio(before: Any, after: Any) -> float | None:
    """Share of CPU time spent busy between two cpu_times readings; None when no time passed."""
    fields = after._fields
    total = sum(
        getattr(after, f) - getattr(before, f) for f in fields if f not in ("guest", "guest_nice")
    )
    idle = sum(getattr(after, f) - getattr(before, f) for f in _IDLE_FIELDS if f in fields)
    if total <= 0:
        return None
    return float(min(1.0, max(0.0, 1.0 - idle / total)))


async def probe(settings: HostSettings, *, deps: ProbeDeps) -> ProbeResult:
    """Sample CPU over the window and memory once."""
    system = deps.system
    before = await asyncio.to_thread(system.cpu_times)
    await asyncio.sleep(settings.cpu_sample_window)
    after, memory = await asyncio.to_thread(lambda: (system.cpu_times(), system.virtual_memory()))
    cpu = busy_ratio(before, after)
    samples = []
    reasons: tuple[str, ...] = ()
    if cpu is None:
        reasons = ("no_cpu_sample",)
    else:
        samples.append(sample("voicedrive_host_cpu_usage_ratio", cpu))
    if memory.total > 0:
        used = (memory.total - memory.available) / memory.total
        samples.append(sample("voicedrive_host_memory_usage_ratio", min(1.0, max(0.0, used))))
    else:
        reasons = (*reasons, "no_memory_sample")
    return ProbeResult(success=not reasons, samples=tuple(samples), reasons=reasons)


def failure(settings: HostSettings, reason: str) -> ProbeResult:
    """No figures, with ``reason``."""
    del settings
    return ProbeResult(success=False, reasons=(reason,))
