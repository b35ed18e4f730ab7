"""The webhook journal: what the 2xx promises, before any processing happens.

A webhook is answered once its body is one row here (one statement, sharing a group commit on
SQLite, one round trip on PostgreSQL). Processing (levels, incident, outbox) runs later and
deletes the row inside its own transaction, so each acknowledged notification is processed
exactly once, also across a crash. Rows belong to the instance that accepted them; another
replica takes over rows older than ``takeover_after`` (their owner died or fell behind).
"""

import asyncio
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voicedrive_receiver.errors import StoreRejected, StoreUnavailable
from voicedrive_receiver.store.schema import GROUP_PREFIX, URGENT_LEVEL, advisory_lock

if TYPE_CHECKING:  # base imports this module
    from voicedrive_receiver.store.base import Connection, Database

_INSERT = (
    "INSERT INTO webhook_journal (group_key, received_at, owner, payload, level) "
    "VALUES ($1, $2, $3, $4, $5)"
)
# PostgreSQL: every append waiting at once, in one statement (a row per array element).
_INSERT_MANY = (
    "INSERT INTO webhook_journal (group_key, received_at, owner, payload, level) "
    "SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::int[]) "
    "RETURNING id"
)
# One multi-row insert holds at most this many rows and, past its first row, this many
# characters of bodies (up to 4 bytes each in UTF-8): a statement stays far inside the command
# timeout whatever the body size limit.
MAX_APPEND_BATCH = 64
MAX_APPEND_CHARS = 4 << 20


@dataclass(frozen=True)
class JournalEntry:
    """One acknowledged notification waiting to be processed."""

    id: int
    group_key: str
    received_at: float
    payload: str


@dataclass(frozen=True)
class EarlierRows:
    """Rows of a pass's groups journaled before its rows of the group, outside the pass."""

    entries: list[JournalEntry]
    # Group key -> the last of its rows read, when the limit may have left later ones unread:
    # the pass's rows of the group after it must wait for them.
    cut: dict[str, int]


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


# The rows a processing pass may take ($1: this instance, $2: the takeover cutoff).
_MINE = "failed_at IS NULL AND (owner = $1 OR received_at <= $2)"

_Append = tuple[str, float, str, str, int | None]

# PostgreSQL: for each group of a pass ($1, up to its last row in the pass, $2), the earliest
# unprocessed rows of that group outside the pass ($3: the pass's ids), at most $4, read in
# order from webhook_journal_group. The exact key is a filter on that range, so only the
# group's own rows count towards the limit: rows of other groups under the same indexed prefix
# never use up a group's share (they did, and a group then waited for rows that were not its
# own: a pass that started nothing, forever). The planner expects a group's average number of
# rows and, once ANALYZE ran, reads the whole range and sorts it: 0.2-1.3 ms for a pass over 58
# groups of 6,000 waiting rows, 7-12 ms when a peer holds 10,000 rows of the pass's group (once
# per pass of up to 64 rows, never per row; max_backlog bounds it).
_EARLIER = (
    "SELECT j.id, j.group_key, j.received_at, j.payload "  # noqa: S608
    "FROM unnest($1::text[], $2::bigint[]) AS g(group_key, upto) "
    "CROSS JOIN LATERAL (SELECT id, group_key, received_at, payload FROM webhook_journal "
    f"WHERE substr(group_key, 1, {GROUP_PREFIX}) = substr(g.group_key, 1, {GROUP_PREFIX}) "
    "AND group_key = g.group_key AND id < g.upto AND failed_at IS NULL "
    "AND id <> ALL($3::bigint[]) ORDER BY id LIMIT $4) AS j"
)


class _Appender:
    """PostgreSQL: appends that wait at the same time share one multi-row INSERT.

    One round trip (and one commit) then answers many webhooks, as SQLite's group commit does;
    while it is on its way the next appends queue. A row the server refuses fails alone: the
    batch is retried row by row, so one bad body cannot turn its neighbours into 503s.
    """

    def __init__(self, db: "Database") -> None:
        self.db = db
        self._queue: list[tuple[_Append, asyncio.Future[int]]] = []
        self._inflight: list[tuple[_Append, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, row: _Append) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="journal-append")
            self._flusher.add_done_callback(self._flusher_ended)
        return await future

    async def _flush(self) -> None:
        while self._queue:
            self._inflight = batch = self._take()
            rows = [row for row, _ in batch]
            outcomes: list[int | BaseException]
            try:
                outcomes = list(await self._insert(rows))
            except StoreRejected as exc:
                outcomes = [await self._one(row) for row in rows] if len(rows) > 1 else [exc]
            except Exception as exc:
                outcomes = [exc] * len(batch)
            _settle(batch, outcomes)
            self._inflight = []

    def _flusher_ended(self, task: "asyncio.Task[None]") -> None:
        if task is not self._flusher or not task.cancelled():
            return
        # Cancelled (the loop is closing), perhaps before it began: nobody would flush what
        # waits, so all of it is answered 503, as when the store is unavailable.
        waiting, self._inflight, self._queue = self._inflight + self._queue, [], []
        _settle(waiting, [StoreUnavailable("PostgreSQL store is closing")] * len(waiting))

    def _take(self) -> list[tuple[_Append, "asyncio.Future[int]"]]:
        size = count = 0
        for (_, _, _, payload, _), _ in self._queue[:MAX_APPEND_BATCH]:
            size += len(payload)
            if count and size > MAX_APPEND_CHARS:
                break
            count += 1
        batch = self._queue[:count]
        del self._queue[:count]
        return batch

    async def _insert(self, rows: list[_Append]) -> list[int]:
        if len(rows) == 1:
            return [await self._single(rows[0])]
        columns = [list(column) for column in zip(*rows, strict=True)]
        found = await self.db.statement(_INSERT_MANY, *columns)
        # Each row's id comes from the sequence as it is inserted, in array order: ascending
        # ids are the rows in order (RETURNING itself promises no order).
        return sorted(int(r["id"]) for r in found)

    async def _single(self, row: _Append) -> int:
        return await self.db.insert(_INSERT, *row)

    async def _one(self, row: _Append) -> int | BaseException:
        try:
            return await self._single(row)
        except Exception as exc:
            return exc


def _settle(
    batch: list[tuple[_Append, "asyncio.Future[int]"]], outcomes: list[int | BaseException]
) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class Journal:
    """Queries on ``webhook_journal``."""

    def __init__(self, db: "Database") -> None:
        self.db = db
        # SQLite's group commit already shares one commit among the appends waiting.
        self._appender = _Appender(db) if db.dialect == "postgres" else None

    async def append(
        self,
        *,
        group_key: str,
        received_at: float,
        owner: str,
        payload: str,
        level: int | None = None,
    ) -> int:
        """Store an accepted body durably; its id. ``level``: of its firing alerts, if any."""
        row = (group_key, received_at, owner, payload, level)
        if self._appender is not None:
            return await self._appender.append(row)
        return await self.db.insert(_INSERT, *row)

    async def pending(
        self, *, owner: str, now: float, takeover_after: float, limit: int, after: int = 0
    ) -> list[JournalEntry]:
        """The oldest rows this instance should process: its own, and abandoned ones.

        Processed one after the other in id order, a group's notifications keep the order in
        which they were accepted. A live peer's rows are skipped here (a primary-key scan that
        passes over at most what that peer accepted within ``takeover_after``); those of the
        rows' groups that came earlier are added by ``earlier``. ``after``: only ids above it.
        """
        rows = await self.db.statement(
            "SELECT id, group_key, received_at, payload FROM webhook_journal "  # noqa: S608
            f"WHERE id > $4 AND {_MINE} ORDER BY id LIMIT $3",
            owner,
            self._cutoff(now, takeover_after),
            limit,
            after,
        )
        return [_entry(r) for r in rows]

    async def urgent(
        self, *, owner: str, now: float, takeover_after: float, limit: int
    ) -> list[JournalEntry]:
        """The oldest rows of the groups with an urgent row waiting (``URGENT_LEVEL``).

        A group's earlier rows come along, so it keeps its order; other groups' rows wait.
        Rows as ``pending`` chooses them (this instance's, and abandoned ones); a live peer's
        earlier rows of the group are added by ``earlier``.
        """
        # The oldest ``limit`` urgent rows name the groups; each group's rows up to its last
        # urgent one of those, by id alone, and only then the chosen rows' bodies: a pass
        # reads those index entries, never the whole urgent backlog or a sort of bodies.
        prefix = f"substr(%s.group_key, 1, {GROUP_PREFIX})"
        by_urgent = self._indexed_by("webhook_journal_urgent")
        by_group = self._indexed_by("webhook_journal_group")
        rows = await self.db.statement(
            "SELECT id, group_key, received_at, payload FROM webhook_journal "  # noqa: S608
            "WHERE id IN (SELECT j.id FROM (SELECT group_key, MAX(id) AS upto FROM "
            f"(SELECT group_key, id FROM webhook_journal{by_urgent} "
            f"WHERE level >= {URGENT_LEVEL} AND {_MINE} ORDER BY id LIMIT $3) AS oldest "
            "GROUP BY group_key) AS urgent "
            f"JOIN webhook_journal AS j{by_group} "
            f"ON {prefix % 'j'} = {prefix % 'urgent'} AND j.group_key = urgent.group_key "
            "AND j.id <= urgent.upto "
            f"WHERE {_MINE} ORDER BY j.id LIMIT $3) ORDER BY id",
            owner,
            self._cutoff(now, takeover_after),
            limit,
        )
        return [_entry(r) for r in rows]

    async def earlier(self, entries: Sequence[JournalEntry], *, limit: int) -> EarlierRows:
        """The unprocessed rows of ``entries``' groups outside them, journaled before the last
        of the group's entries: mostly a live peer's (PostgreSQL; one statement).

        With replicas behind a load balancer a group's notifications are spread over them, and
        each replica's pass holds only its own rows. Processing these first, in id order,
        keeps the group's order across replicas, and taking a peer's row is safe: ``take``
        deletes it under the group's lock, so whoever comes second finds it gone. Id order is
        the order Alertmanager sent them: it sends a group's next notification only after the
        previous one was answered 2xx, which happens once its row is committed, so the earlier
        one has the smaller id and is visible by the time the later one is processed.

        At most about ``limit`` rows in all (``limit // groups`` per group, at least one); where
        a group's share was used up, ``cut`` says from where its entries must wait.
        """
        # One receiver per SQLite file (see _cutoff): every row is in the pass already.
        if self.db.dialect != "postgres" or not entries:
            return EarlierRows([], {})
        upto: dict[str, int] = {}
        for entry in entries:
            upto[entry.group_key] = max(upto.get(entry.group_key, entry.id), entry.id)
        share = max(1, limit // len(upto))
        rows = await self.db.statement(
            _EARLIER, list(upto), list(upto.values()), [e.id for e in entries], share
        )
        found = sorted((_entry(r) for r in rows), key=lambda e: e.id)
        read = Counter(e.group_key for e in found)
        last = {e.group_key: e.id for e in found}  # ascending: the last one read wins
        return EarlierRows(found, {g: last[g] for g, n in read.items() if n >= share})

    def _indexed_by(self, index: str) -> str:
        # SQLite without statistics (no ANALYZE runs) prefers webhook_journal_state, whose
        # ``failed_at IS NULL`` matches the whole backlog: 20 ms at 30,000 rows instead of
        # 0.5 ms. PostgreSQL picks these indexes by itself.
        return f" INDEXED BY {index}" if self.db.dialect == "sqlite" else ""

    def _cutoff(self, now: float, takeover_after: float) -> float:
        """Receipt time at or before which anyone's unprocessed rows are taken over."""
        # One receiver per SQLite file (replicas need PostgreSQL): every row is this one's,
        # whichever host name and port accepted it, so a receiver restarted under another
        # name (a recreated container) resumes at once instead of after ``takeover_after``.
        return math.inf if self.db.dialect == "sqlite" else now - takeover_after

    async def take(self, conn: "Connection", entry_id: int, *, lock_key: str) -> bool:
        """Inside a processing transaction: remove the row; False if already processed.

        Also takes the transaction's lock on ``lock_key`` (see ``Database.transaction``) in
        the same round trip: on PostgreSQL an advisory lock, taken before the row goes (also
        when it is gone already), so it is held by the time the next statement reads.
        """
        if self.db.dialect == "postgres":
            row = await conn.fetchrow(
                "WITH locked AS (SELECT "  # noqa: S608 - constants
                + advisory_lock("$2")
                + ") "
                "DELETE FROM webhook_journal WHERE id = $1 AND failed_at IS NULL "
                "AND EXISTS (SELECT FROM locked) RETURNING id",
                entry_id,
                lock_key,
            )
        else:
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
