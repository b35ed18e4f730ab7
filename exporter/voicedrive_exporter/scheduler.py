"""Runs each probe on its own interval with a hard timeout; at most one run in flight.

A tick that finds the previous run of the same probe still going is skipped and counted,
never queued: a slow target must not pile up connections. A run that hits the hard timeout
or crashes is recorded as the probe's ``failure(settings, reason)``, so no value of an older
run survives it.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from voicedrive_common.clock import Clock, sleep_until_stopped
from voicedrive_exporter.probes.base import ProbeDeps, ProbeKind, ProbeResult
from voicedrive_exporter.snapshot import SnapshotStore

log = logging.getLogger("voicedrive_exporter.scheduler")


@dataclass(frozen=True)
class Job:
    """One probe with its settings; ``settings.schedule`` gives interval and timeout."""

    kind: ProbeKind
    settings: Any

    @property
    def name(self) -> str:
        """The ``probe`` label."""
        return self.kind.name

    @property
    def interval(self) -> float:
        """Seconds between runs."""
        return float(self.settings.schedule.interval)

    @property
    def timeout(self) -> float:
        """Hard limit of one run, below the interval."""
        return float(self.settings.schedule.timeout)


class Scheduler:
    """Owns the probe loops of one config; ``start()`` then ``stop()``."""

    def __init__(
        self, jobs: list[Job], *, store: SnapshotStore, deps: ProbeDeps, clock: Clock
    ) -> None:
        self.jobs = jobs
        self._store = store
        self._deps = deps
        self._clock = clock
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def trigger(self, job: Job) -> asyncio.Task[None] | None:
        """Start one run of ``job`` unless one is in flight (then count a skip, return None)."""
        running = self._inflight.get(job.name)
        if running is not None and not running.done():
            self._store.skip(job.name)
            log.warning(
                "probe run skipped: previous run still in flight", extra={"probe": job.name}
            )
            return None
        task = asyncio.create_task(self._run(job), name=f"probe-{job.name}")
        self._inflight[job.name] = task
        return task

    async def _run(self, job: Job) -> None:
        try:
            async with asyncio.timeout(job.timeout):
                result: ProbeResult = await job.kind.run(job.settings, deps=self._deps)
        except TimeoutError:
            log.warning(
                "probe run hit its hard timeout", extra={"probe": job.name, "timeout": job.timeout}
            )
            result = job.kind.failure(job.settings, "timeout")
        except Exception:
            log.exception("probe crashed", extra={"probe": job.name})
            result = job.kind.failure(job.settings, "other")
        self._store.record(job.name, result, self._clock.now().timestamp())

    async def run_round(self) -> None:
        """Run every probe once and wait for all of them (skipped ones are not waited for)."""
        tasks = [t for t in (self.trigger(job) for job in self.jobs) if t is not None]
        if tasks:
            await asyncio.gather(*tasks)

    def start(self) -> None:
        """Start one loop per probe; the first runs start at once."""
        self._loops = [
            asyncio.create_task(self._loop(job), name=f"loop-{job.name}") for job in self.jobs
        ]

    async def _loop(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            self.trigger(job)
            next_at += job.interval
            # Ticks keep to the grid; after a long stall skip to the next grid point.
            if next_at < loop.time():
                next_at = loop.time() + job.interval
            if await sleep_until_stopped(self._stop, next_at - loop.time()):
                break

    async def stop(self) -> None:
        """Stop the loops and cancel runs in flight; returns when everything has ended."""
        self._stop.set()
        tasks = [*self._loops, *self._inflight.values()]
        for task in self._inflight.values():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops, self._inflight = [], {}
