"""The webhook journal: what the 2xx promises, before any processing happens.

A webhook is answered once its body is one row here (one statement, sharing a group commit on
SQLite, one round trip on PostgreSQL). Processing (levels, incident, outbox) runs later and
deletes the row inside its own transaction, so each acknowledged notification is processed
exactly once, also across a crash. Rows belong to the instance that accepted them; another
replica takes over rows older than ``takeover_after`` (their owner died or fell behind).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # base imports this module
    from voicedrive_receiver.store.base import Connection, Database


@dataclass(frozen=True)
class JournalEntry:
    """One acknowledged notification waiting to be processed."""

    id: int
    group_key: str
    received_at: float
    payload: str


@dataclass(frozen=True)
class JournalStats:
    """Rows waiting, the oldest one's receipt time, and rows that failed processing."""

    pending: int
    oldest_received_at: float | None
    failed: int


def _entry(row: Mapping[str, Any]) -> JournalEntry:
    return JournalEntry(
        id=int(row["id"]),
        group_key=row["group_key"],
        received_at=float(row["received_at"]),
        payload=row["payload"],
    )


class Journal:
    """Queries on ``webhook_journal``."""

    def __init__(self, db: "Database") -> None:
        self.db = db

    async def append(self, *, group_key: str, received_at: float, owner: str, payload: str) -> int:
        """Store an accepted body durably; its id."""
        rows = await self.db.statement(
            "INSERT INTO webhook_journal (group_key, received_at, owner, payload) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            group_key,
            received_at,
            owner,
            payload,
        )
        return int(rows[0]["id"])

    async def pending(
        self, *, owner: str, now: float, takeover_after: float, limit: int, after: int = 0
    ) -> list[JournalEntry]:
        """The oldest rows this instance should process: its own, and abandoned ones.

        Processed one after the other in id order, a group's notifications keep the order in
        which they were accepted. Only a live peer's rows are skipped (a primary-key scan that
        passes over at most what that peer accepted within ``takeover_after``). ``after``: only
        ids above it.
        """
        # One receiver per SQLite file (replicas need PostgreSQL): every row is this one's,
        # whichever host name and port accepted it, so a receiver restarted under another
        # name (a recreated container) resumes at once instead of after ``takeover_after``.
        cutoff = math.inf if self.db.dialect == "sqlite" else now - takeover_after
        rows = await self.db.statement(
            "SELECT id, group_key, received_at, payload FROM webhook_journal "
            "WHERE id > $4 AND failed_at IS NULL AND (owner = $1 OR received_at <= $2) "
            "ORDER BY id LIMIT $3",
            owner,
            cutoff,
            limit,
            after,
        )
        return [_entry(r) for r in rows]

    async def take(self, conn: "Connection", entry_id: int) -> bool:
        """Inside a processing transaction: remove the row; False if already processed."""
        row = await conn.fetchrow(
            "DELETE FROM webhook_journal WHERE id = $1 AND failed_at IS NULL RETURNING id",
            entry_id,
        )
        return row is not None

    async def fail(self, entry_id: int, *, now: float, error: str) -> None:
        """Keep a row that cannot be processed, with the reason, out of the queue."""
        await self.db.statement(
            "UPDATE webhook_journal SET failed_at = $2, error = $3 WHERE id = $1",
            entry_id,
            now,
            error[:500],
        )

    async def stats(self) -> JournalStats:
        """Counts for the gauges (index-only: the payloads are not read)."""
        waiting = await self.db.statement(
            "SELECT COUNT(*) AS n, MIN(received_at) AS oldest FROM webhook_journal "
            "WHERE failed_at IS NULL"
        )
        failed = await self.db.statement(
            "SELECT COUNT(*) AS n FROM webhook_journal WHERE failed_at IS NOT NULL"
        )
        oldest = waiting[0]["oldest"]
        return JournalStats(
            pending=int(waiting[0]["n"]),
            oldest_received_at=float(oldest) if oldest is not None else None,
            failed=int(failed[0]["n"]),
        )
