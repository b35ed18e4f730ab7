"""Host probe: CPU from two readings inside one run (no 0.0 first sample), memory ratio."""

import asyncio
import time
from collections import namedtuple
from typing import Any

import psutil

from voicedrive_exporter.config import HostSettings
from voicedrive_exporter.probes import host
from voicedrive_exporter.probes.base import ProbeDeps

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
Memory = namedtuple("Memory", "total available")


class ScriptedSystem:
    """cpu_times() answers from a script; each run reads it twice."""

    def __init__(self, times: list[Times], memory: Memory) -> None:
        self._times = iter(times)
        self._memory = memory

    def cpu_times(self) -> Any:
        return next(self._times)

    def virtual_memory(self) -> Any:
        return self._memory


def times(busy: float, idle: float, iowait: float = 0.0) -> Times:
    return Times(busy, 0, 0, idle, iowait, 0, 0, 0, 0, 0)


def with_system(deps: ProbeDeps, system: Any) -> ProbeDeps:
    return ProbeDeps(session=deps.session, clock=deps.clock, system=system)


async def test_first_run_reports_real_cpu_usage_not_zero(deps: ProbeDeps) -> None:
    system = ScriptedSystem(
        [times(100, 900), times(100 + 0.75, 900 + 0.25)], Memory(total=8000, available=2000)
    )
    settings = HostSettings(cpu_sample_window=0.05)
    result = await host.probe(settings, deps=with_system(deps, system))
    got = {s.name: s.value for s in result.samples}
    assert got["voicedrive_host_cpu_usage_ratio"] == 0.75
    assert got["voicedrive_host_memory_usage_ratio"] == 0.75


def test_iowait_counts_as_idle() -> None:
    assert host.busy_ratio(times(0, 0, 0), times(1, 2, 1)) == 0.25


def test_no_time_passing_gives_no_ratio() -> None:
    assert host.busy_ratio(times(5, 5), times(5, 5)) is None


async def test_a_run_without_cpu_progress_fails_without_a_cpu_value(deps: ProbeDeps) -> None:
    system = ScriptedSystem([times(5, 5), times(5, 5)], Memory(total=100, available=50))
    result = await host.probe(HostSettings(cpu_sample_window=0.05), deps=with_system(deps, system))
    assert result.reasons == ("no_cpu_sample",)
    assert [s.name for s in result.samples] == ["voicedrive_host_memory_usage_ratio"]


async def test_real_psutil_readings_are_ratios_and_the_loop_keeps_running(deps: ProbeDeps) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(1000):
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    result = await host.probe(HostSettings(cpu_sample_window=0.3), deps=deps)
    task.cancel()
    assert deps.system is psutil
    got = {s.name: s.value for s in result.samples}
    assert 0 <= got["voicedrive_host_cpu_usage_ratio"] <= 1
    assert 0 < got["voicedrive_host_memory_usage_ratio"] < 1
    assert ticks >= 0.3 / 0.01 * 0.5, "the event loop was blocked during the sample window"
    assert time.monotonic() - started < 1.0
