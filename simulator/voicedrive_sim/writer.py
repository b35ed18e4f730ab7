"""Writes notification delivery rows into PostgreSQL, so the SQL notification probe has data.

Which rows fail is decided by error diffusion rather than randomness: a failure ratio of 0.25
fails exactly every fourth row, so tests and the drill see the ratio they asked for.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncpg

from voicedrive_common.clock import sleep_until_stopped
from voicedrive_common.secrets import Secret
from voicedrive_sim.faults import FaultBoard

log = logging.getLogger("voicedrive_sim.writer")

CHANNELS = ("push", "email", "sms")
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS notification_deliveries (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    channel text NOT NULL,
    status text NOT NULL CHECK (status IN ('delivered', 'failed'))
);
CREATE INDEX IF NOT EXISTS notification_deliveries_created_at
    ON notification_deliveries (created_at);
"""
INSERT = (
    "INSERT INTO notification_deliveries (channel, status)"
    " SELECT * FROM unnest($1::text[], $2::text[])"
)
_CONNECT_TIMEOUT = 5.0
_MAX_BACKOFF = 10.0
# A stalled database must not turn into one huge burst when it comes back.
_MAX_ROWS_PER_TICK = 10_000


@dataclass
class RowPlan:
    """Carry-over between ticks: fractional rows and fractional failures not yet written."""

    rows: float = 0.0
    failures: float = 0.0
    written: int = 0

    def next_batch(
        self, *, rows_per_second: float, failure_ratio: float, elapsed: float
    ) -> list[str]:
        """Statuses of the rows due after ``elapsed`` seconds at the given rate and ratio."""
        self.rows += max(0.0, rows_per_second * elapsed)
        count = min(int(self.rows), _MAX_ROWS_PER_TICK)
        self.rows -= int(self.rows)
        statuses = []
        for _ in range(count):
            self.failures += failure_ratio
            if self.failures >= 1.0 - 1e-9:
                self.failures -= 1.0
                statuses.append("failed")
            else:
                statuses.append("delivered")
        return statuses


class NotificationWriter:
    """Background loop: (re)connect, create the table, insert the rows due every interval."""

    def __init__(self, *, dsn: Secret, board: FaultBoard, interval: float) -> None:
        self._dsn = dsn
        self._board = board
        self._interval = interval
        self.plan = RowPlan()
        self.rows_written = 0
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Write until ``stop`` is set; database errors are logged and retried with backoff."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
                return
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "notification writer lost the database; retrying",
                    extra={"err": type(exc).__name__, "retry_in": backoff},
                )
            if await sleep_until_stopped(stop, backoff):
                return
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _session(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self._dsn.reveal(), timeout=_CONNECT_TIMEOUT)
        try:
            await conn.execute(CREATE_TABLE)
            self.ready.set()
            loop = asyncio.get_running_loop()
            last = loop.time()
            index = self.rows_written
            while not await sleep_until_stopped(stop, self._interval):
                now = loop.time()
                statuses = self.plan.next_batch(
                    rows_per_second=self._board.rows_per_second,
                    failure_ratio=self._board.failure_ratio,
                    elapsed=now - last,
                )
                last = now
                if statuses:
                    channels = [CHANNELS[(index + i) % len(CHANNELS)] for i in range(len(statuses))]
                    await conn.execute(INSERT, channels, statuses, timeout=_CONNECT_TIMEOUT)
                    index += len(statuses)
                    self.rows_written += len(statuses)
        finally:
            with contextlib.suppress(Exception):  # a dead connection cannot close cleanly
                await conn.close(timeout=2)
