"""A small supervisor: start services in order, wait until each is ready, stop them all.

Every child gets its own process group (so a stop reaches whatever it forked) and, on Linux,
a parent-death signal (so even a killed launcher leaves no orphans). Stopping is SIGTERM to
the group, a bounded wait, then SIGKILL to the group: a child that hangs cannot keep the
demo alive.
"""

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import aiohttp

from voicedrive_common.errors import VoiceDriveError
from voicedrive_demo.services import Service

log = logging.getLogger("voicedrive_demo.supervisor")

_POLL = 0.1
_PR_SET_PDEATHSIG = 1


class ServiceFailed(VoiceDriveError):
    """A service did not start, did not become ready, or exited while it should run."""

    def __init__(self, name: str, reason: str, log_tail: str = "") -> None:
        self.name = name
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"{name}: {reason}")


@dataclass
class Running:
    """A started service."""

    service: Service
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        """Process id (also the process group id)."""
        return int(self.process.pid)


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive ``signum`` when the launcher dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        # Runs in the child between fork and exec, after any change of user (which would
        # clear the setting), so it also holds for a server run as an unprivileged account.
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)

    return preexec


class Supervisor:
    """Owns the child processes of the demo."""

    def __init__(self, *, log_dir: Path, stop: asyncio.Event) -> None:
        self._log_dir = log_dir
        self._stop = stop
        self.running: list[Running] = []

    async def start_all(self, services: Sequence[Service]) -> None:
        """Start each service in order and wait until it is ready before the next."""
        for service in services:
            if self._stop.is_set():
                return
            await self.start(service)

    async def start(self, service: Service) -> Running:
        """Start one service and wait (bounded) until its ready checks pass."""
        log_path = self._log_dir / f"{service.name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", **service.env)
        with _open_log(log_path) as out:
            try:
                process = await asyncio.create_subprocess_exec(
                    *service.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            except OSError as exc:
                raise ServiceFailed(
                    service.name, f"cannot start {service.argv[0]}: {exc}"
                ) from None
        running = Running(service=service, process=process, log_path=log_path)
        self.running.append(running)
        log.info("started", extra={"service": service.name, "pid": running.pid})
        await self._wait_ready(running)
        log.info("ready", extra={"service": service.name})
        return running

    async def watch(self, *, duration: float | None) -> None:
        """Return when stop is set or ``duration`` passes; raise when a service exits."""
        waits = {
            asyncio.create_task(r.process.wait(), name=r.service.name): r for r in self.running
        }
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                [*waits, stopper], timeout=duration, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in [*waits, stopper]:
                task.cancel()
        for task in done:
            if task in waits:
                gone = waits[task]
                raise ServiceFailed(
                    gone.service.name,
                    f"exited unexpectedly with status {gone.process.returncode}",
                    tail(gone.log_path),
                )

    async def stop_all(self) -> None:
        """Stop every service, last started first."""
        while self.running:
            await self._stop_one(self.running.pop())

    async def _stop_one(self, running: Running) -> None:
        name, pgid = running.service.name, running.pid
        if running.process.returncode is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(running.process.wait(), running.service.stop_timeout)
            except TimeoutError:
                log.warning("did not stop in time; killing", extra={"service": name})
        # Also reaches anything the service forked that outlived it.
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running.process.wait(), 5.0)
        log.info("stopped", extra={"service": name, "status": running.process.returncode})

    async def _wait_ready(self, running: Running) -> None:
        service = running.service
        loop = asyncio.get_running_loop()
        deadline = loop.time() + service.ready_timeout
        pending = list(service.ready)
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while pending:
                if running.process.returncode is not None:
                    raise ServiceFailed(
                        service.name,
                        f"exited with status {running.process.returncode} before it was ready",
                        tail(running.log_path),
                    )
                if self._stop.is_set():
                    return
                if await check_ready(pending[0], session):
                    pending.pop(0)
                    continue
                if loop.time() > deadline:
                    raise ServiceFailed(
                        service.name,
                        f"not ready after {service.ready_timeout:g}s ({pending[0]})",
                        tail(running.log_path),
                    )
                await asyncio.sleep(_POLL)


async def check_ready(url: str, session: aiohttp.ClientSession) -> bool:
    """Whether one ready check passes right now."""
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port), 1.0
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True
    try:
        async with session.get(url, allow_redirects=False) as resp:
            return 200 <= resp.status < 300
    except (aiohttp.ClientError, TimeoutError):
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file (empty when unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _open_log(path: Path) -> BinaryIO:
    # Small local file operations; not worth a thread.
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
