"""Injectable time: production code asks a Clock, tests move a FakeClock by hand."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    """Source of wall-clock and monotonic time."""

    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds from time.monotonic()."""
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to; starts at a fixed instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2025, 9, 1, 0, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._mono = 1000.0

    def now(self) -> datetime:
        """The pinned wall-clock time."""
        return self._now

    def monotonic(self) -> float:
        """The pinned monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, when: datetime) -> None:
        """Jump the wall clock to ``when`` (forward only)."""
        self.advance((when - self._now).total_seconds())


async def sleep_until_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


async def sleep_until_woken(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` or until ``wake`` or ``stop`` is set, whichever comes first."""
    waiters: list[asyncio.Task[Any]] = [
        asyncio.create_task(wake.wait()),
        asyncio.create_task(stop.wait()),
    ]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
