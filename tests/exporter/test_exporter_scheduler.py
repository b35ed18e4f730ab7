"""Scheduler: one run in flight per probe, overruns skipped and counted, hard timeouts."""

import asyncio
from dataclasses import dataclass
from typing import Any

from voicedrive_common.clock import FakeClock
from voicedrive_exporter.config import Schedule
from voicedrive_exporter.probes.base import ProbeDeps, ProbeKind, ProbeResult, sample
from voicedrive_exporter.scheduler import Job, Scheduler
from voicedrive_exporter.snapshot import SnapshotStore


@dataclass(frozen=True)
class FakeSettings:
    schedule: Schedule


class ScriptedProbe:
    """A probe whose runs wait for ``release`` and then return the next scripted outcome."""

    def __init__(self, *outcomes: ProbeResult | BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.release = asyncio.Event()
        self.release.set()
        self.started = 0

    async def run(self, settings: Any, *, deps: ProbeDeps) -> ProbeResult:
        del settings, deps
        self.started += 1
        await self.release.wait()
        outcome = self.outcomes.pop(0) if self.outcomes else OK
        if outcome is None:
            await asyncio.Event().wait()  # hangs until cancelled
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, ProbeResult)
        return outcome


OK = ProbeResult(success=True, samples=(sample("voicedrive_backup_age_seconds", 5),))


def failure(settings: Any, reason: str) -> ProbeResult:
    del settings
    return ProbeResult(success=False, reasons=(reason,))


def make(
    probe: ScriptedProbe,
    deps: ProbeDeps,
    clock: FakeClock,
    *,
    interval: float = 10.0,
    timeout: float = 5.0,
) -> tuple[Scheduler, Job, SnapshotStore]:
    store = SnapshotStore()
    job = Job(ProbeKind("backup", probe.run, failure), FakeSettings(Schedule(interval, timeout)))
    store.configure([job.name])
    return Scheduler([job], store=store, deps=deps, clock=clock), job, store


async def test_tick_during_a_run_is_skipped_and_counted_not_queued(
    deps: ProbeDeps, clock: FakeClock
) -> None:
    probe = ScriptedProbe()
    probe.release.clear()
    scheduler, job, store = make(probe, deps, clock)
    first = scheduler.trigger(job)
    assert first is not None
    await asyncio.sleep(0)
    assert scheduler.trigger(job) is None
    assert scheduler.trigger(job) is None
    probe.release.set()
    await first
    assert store.snapshot.skipped == {"backup": 2}
    assert probe.started == 1


async def test_run_past_the_hard_timeout_is_recorded_as_a_timeout_failure(
    deps: ProbeDeps, clock: FakeClock
) -> None:
    scheduler, job, store = make(ScriptedProbe(None), deps, clock, interval=1.0, timeout=0.05)
    task = scheduler.trigger(job)
    assert task is not None
    await asyncio.wait_for(task, 1.0)
    record = store.snapshot.records["backup"]
    assert record.result == ProbeResult(success=False, reasons=("timeout",))
    assert store.snapshot.errors == {("backup", "timeout"): 1}


async def test_crashing_probe_is_recorded_as_reason_other(
    deps: ProbeDeps, clock: FakeClock
) -> None:
    scheduler, _, store = make(ScriptedProbe(RuntimeError("boom")), deps, clock)
    await scheduler.run_round()
    assert store.snapshot.records["backup"].result.reasons == ("other",)


async def test_failed_run_leaves_no_value_of_the_previous_run(
    deps: ProbeDeps, clock: FakeClock
) -> None:
    scheduler, _, store = make(ScriptedProbe(OK, RuntimeError("boom")), deps, clock)
    await scheduler.run_round()
    assert store.snapshot.records["backup"].result.samples == OK.samples
    await scheduler.run_round()
    assert store.snapshot.records["backup"].result.samples == ()


async def test_last_run_timestamp_comes_from_the_clock(deps: ProbeDeps, clock: FakeClock) -> None:
    scheduler, _, store = make(ScriptedProbe(), deps, clock)
    clock.advance(42)
    await scheduler.run_round()
    assert store.snapshot.records["backup"].finished_at == clock.now().timestamp()


async def test_loop_runs_on_the_interval_and_stop_cancels_the_run_in_flight(
    deps: ProbeDeps, clock: FakeClock
) -> None:
    probe = ScriptedProbe()
    scheduler, _, store = make(probe, deps, clock, interval=0.02, timeout=0.01)
    scheduler.start()
    for _ in range(200):  # bounded wait: at most 2 s
        if probe.started >= 3:
            break
        await asyncio.sleep(0.01)
    probe.release.clear()  # the next run hangs until stop() cancels it
    await asyncio.wait_for(scheduler.stop(), 1.0)
    assert probe.started >= 3
    assert store.snapshot.ready


async def test_ready_only_after_every_probe_ran_once(deps: ProbeDeps, clock: FakeClock) -> None:
    scheduler, _, store = make(ScriptedProbe(), deps, clock)
    assert not store.snapshot.ready
    await scheduler.run_round()
    assert store.snapshot.ready
