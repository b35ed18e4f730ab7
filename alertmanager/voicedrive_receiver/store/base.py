"""The store contract and the SQL both backends share.

``SqlStore`` holds every query once, written with ``$n`` placeholders; a backend supplies a
``Database`` (SQLite in a thread, or an asyncpg pool) that runs them and says which dialect it
speaks. Exactly-once rests on constraints, not memory: ``notifications.identity`` and
``outbox.delivery_id`` are unique, at most one incident per group is not closed, and outbox rows
are claimed with a lease (plus ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) so replicas never send
the same row while the lease holds; a crashed holder's lease runs out and the row is claimable.
"""

import hashlib
import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from voicedrive_receiver.routing import Route
from voicedrive_receiver.store.journal import Journal
from voicedrive_receiver.store.schema import MIGRATIONS, Dialect

Row = Mapping[str, Any]
T = TypeVar("T")

# Incident statuses; issue-5 lifecycle adds "monitoring" between resolved and closed.
ACTIVE_STATUSES = ("open", "acknowledged")
# Outbox rows parked for business hours live on ``held:<channel>`` (lifecycle/hold.py).
HELD_PREFIX = "held:"


class Connection(Protocol):
    """One connection (inside a transaction when obtained from ``Database.transaction``)."""

    async def execute(self, sql: str, *args: Any) -> None:
        """Run a statement."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Rows of a query."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """First row of a query, or None."""
        ...


# A unit of work: only awaits the Connection, so SQLite can run it on its own thread.
Work = Callable[["Connection"], Coroutine[Any, Any, T]]


class Database(Protocol):
    """What a backend provides to ``SqlStore``."""

    dialect: Dialect

    def transaction(
        self, *, lock_key: str | None = None
    ) -> AbstractAsyncContextManager[Connection]:
        """A transaction; ``lock_key`` serialises transactions on the same key across replicas."""
        ...

    async def run(self, work: "Work[T]", *, lock_key: str | None = None) -> T:
        """Run ``work`` in a transaction of its own (SQLite may commit several together)."""
        ...

    async def statement(self, sql: str, *args: Any) -> list[Row]:
        """One statement in a transaction of its own; its rows (PostgreSQL: one round trip)."""
        ...

    async def insert(self, sql: str, *args: Any) -> int:
        """One ``INSERT`` of a row into a table with an ``id`` key, as ``statement``; its id."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class AlertRecord:
    """One alert of an ingested notification, with its decided level."""

    fingerprint: str
    status: str
    starts_at: float
    ends_at: float | None
    level: int
    level_source: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class IngestBatch:
    """Everything the webhook decided about one notification, ready to store."""

    identity: str
    group_key: str
    status: str
    level: int
    system: str
    component: str
    summary: str
    received_at: float
    external_url: str
    receiver: str
    payload: str
    alerts: tuple[AlertRecord, ...]
    reopen_within: float


@dataclass(frozen=True)
class GroupState:
    """What the planner may know about the group while the ingest transaction holds it.

    ``firing_routes`` (who got a firing message of this incident) is filled for resolved
    notifications only: nothing else needs it.
    """

    incident_id: str | None
    incident_level: int
    opened: bool
    firing_routes: tuple[Route, ...]
    # Fingerprints firing in this notification that the group had not seen firing before.
    new_firing: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewOutboxRow:
    """A message to enqueue."""

    delivery_id: str
    pair_key: str
    purpose: str
    incident_id: str | None
    group_key: str
    channel: str
    contact: str
    status: str
    level: int
    rendered: Mapping[str, Any]
    not_before: float


@dataclass(frozen=True)
class IngestResult:
    """Outcome of storing one notification."""

    duplicate: bool
    incident_id: str | None
    enqueued: int
    channels: tuple[str, ...] = ()
    # The incident's level after this notification (None for duplicates).
    level: int | None = None
    # The journal row was gone: another replica processed this notification first.
    already_processed: bool = False


Planner = Callable[[GroupState], Sequence[NewOutboxRow]]


@dataclass(frozen=True)
class OutboxRow:
    """A claimed outbox row."""

    id: int
    delivery_id: str
    purpose: str
    incident_id: str | None
    group_key: str
    channel: str
    contact: str
    status: str
    level: int
    attempts: int
    created_at: float
    rendered: Mapping[str, Any]
    # Start of the first attempt whose outcome is unknown (the previous holder's lease ran out
    # without a mark, or a send timed out): the upstream may already have the message.
    doubt_since: float | None = None
    # When this attempt was claimed.
    attempt_started_at: float | None = None

    @property
    def in_doubt(self) -> bool:
        """True when an earlier attempt may have reached the upstream unrecorded."""
        return self.doubt_since is not None


@dataclass(frozen=True)
class ChannelStats:
    """Pending work of one channel."""

    channel: str
    depth: int
    oldest_created_at: float | None


@dataclass(frozen=True)
class Incident:
    """An incident as the API shows it."""

    id: str
    group_key: str
    level: int
    system: str
    component: str
    summary: str
    status: str
    opened_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    closed_at: float | None
    updated_at: float
    record: Mapping[str, Any] = field(default_factory=dict)
    levels: tuple[Mapping[str, Any], ...] = ()
    events: tuple[Mapping[str, Any], ...] = ()
    deliveries: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON for the API, times as RFC 3339 UTC."""
        out: dict[str, Any] = {
            "id": self.id,
            "group_key": self.group_key,
            "level": self.level,
            "system": self.system,
            "component": self.component,
            "summary": self.summary,
            "status": self.status,
            "opened_at": iso(self.opened_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "resolved_at": iso(self.resolved_at),
            "closed_at": iso(self.closed_at),
            "updated_at": iso(self.updated_at),
            "record": dict(self.record),
        }
        if self.levels or self.events or self.deliveries:
            out["level_history"] = [_iso_fields(x) for x in self.levels]
            out["timeline"] = [_iso_fields(x) for x in self.events]
            out["deliveries"] = [_iso_fields(x) for x in self.deliveries]
        return out


def iso(seconds: float | None) -> str | None:
    """UNIX seconds as RFC 3339 UTC with milliseconds."""
    if seconds is None:
        return None
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _iso_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if k.endswith("_at") or k == "at" else v for k, v in row.items()}


class Store(Protocol):
    """Durable state of the receiver; every method may raise StoreUnavailable."""

    journal: Journal

    async def ingest(
        self, batch: IngestBatch, planner: Planner, *, journal_id: int | None = None
    ) -> IngestResult:
        """Store a notification, open/update its incident and enqueue the planner's rows.

        With ``journal_id`` the journal row is removed in the same transaction; when it is
        already gone nothing is written and the result says ``already_processed``.
        """
        ...

    async def enqueue(self, rows: Sequence[NewOutboxRow], *, now: float) -> int:
        """Enqueue extra messages (dead-letter reports, escalations); duplicates are ignored."""
        ...

    async def claim(
        self, channel: str, *, now: float, limit: int, lease: float, owner: str
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows of ``channel``; each claim counts as an attempt."""
        ...

    async def mark_delivered(
        self,
        row: OutboxRow,
        *,
        owner: str,
        now: float,
        upstream_id: str | None,
        reconciled: bool = False,
    ) -> bool:
        """Record success (``reconciled``: found upstream, not sent again); False if lease lost."""
        ...

    async def mark_retry(
        self,
        row: OutboxRow,
        *,
        owner: str,
        now: float,
        next_attempt_at: float,
        error: str,
        refund_attempt: bool = False,
        in_doubt: bool = False,
    ) -> bool:
        """Schedule another attempt; ``refund_attempt`` when the upstream only throttled,
        ``in_doubt`` when this attempt may have reached the upstream (a local timeout)."""
        ...

    async def mark_dead(self, row: OutboxRow, *, owner: str, now: float, error: str) -> bool:
        """Give up on a row: dead letter."""
        ...

    async def next_due(self, channel: str) -> float | None:
        """When the earliest pending row of ``channel`` is due."""
        ...

    async def outbox_stats(self) -> list[ChannelStats]:
        """Pending rows per channel."""
        ...

    async def open_incidents_by_level(self) -> dict[int, int]:
        """Count of not-closed, not-resolved incidents per level."""
        ...

    async def list_incidents(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[Incident]:
        """Newest incidents first."""
        ...

    async def get_incident(self, incident_id: str) -> Incident | None:
        """One incident with level history, timeline and deliveries."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot answer."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


def incident_id_for(group_key: str, identity: str, opened_at: float) -> str:
    """A readable, unique id: date opened (UTC) plus a digest of what opened it."""
    day = datetime.fromtimestamp(opened_at, UTC).strftime("%Y%m%d")
    digest = hashlib.sha256(f"{group_key}\x00{identity}".encode()).hexdigest()[:8]
    return f"INC-{day}-{digest}"


# Fingerprints per lookup statement: far below SQLite's and PostgreSQL's parameter limits.
_LOOKUP_CHUNK = 500

_OUTBOX_COLUMNS = (
    "id, delivery_id, purpose, incident_id, group_key, channel, contact, status, level, "
    "attempts, created_at, rendered, in_doubt_since, attempt_started_at"
)


def _outbox_row(row: Row) -> OutboxRow:
    return OutboxRow(
        id=int(row["id"]),
        delivery_id=row["delivery_id"],
        purpose=row["purpose"],
        incident_id=row["incident_id"],
        group_key=row["group_key"],
        channel=row["channel"],
        contact=row["contact"],
        status=row["status"],
        level=int(row["level"]),
        attempts=int(row["attempts"]),
        created_at=float(row["created_at"]),
        rendered=json.loads(row["rendered"]),
        doubt_since=_float_or_none(row["in_doubt_since"]),
        attempt_started_at=_float_or_none(row["attempt_started_at"]),
    )


def _float_or_none(value: Any) -> float | None:
    return float(value) if value is not None else None


def _incident(row: Row) -> Incident:
    return Incident(
        id=row["id"],
        group_key=row["group_key"],
        level=int(row["level"]),
        system=row["system"],
        component=row["component"],
        summary=row["summary"],
        status=row["status"],
        opened_at=row["opened_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        closed_at=row["closed_at"],
        updated_at=row["updated_at"],
        record=json.loads(row["record"] or "{}"),
    )


def _delivered_detail(row: "OutboxRow", *, reconciled: bool = False) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "channel": row.channel,
        "contact": row.contact,
        "status": row.status,
        "purpose": row.purpose,
    }
    if reconciled:
        # Found at the upstream after an attempt without an outcome: recorded, not resent.
        detail["reconciled"] = True
    return detail


def _held_detail(row: NewOutboxRow) -> dict[str, Any]:
    return {
        "channel": row.channel.removeprefix(HELD_PREFIX),
        "contact": row.contact,
        "status": row.status,
        "level": row.level,
        # RFC 3339 like every time the API shows (the detail is passed through as stored).
        "release_at": iso(row.not_before),
    }


_ALERT_INSERT = (
    "INSERT INTO alerts (group_key, fingerprint, starts_at, status, ends_at, level, "
    "level_source, labels, annotations, incident_id, first_seen_at, last_seen_at) "
)
_ALERT_CONFLICT = (
    " ON CONFLICT (group_key, fingerprint, starts_at) DO UPDATE SET "
    "status = excluded.status, ends_at = excluded.ends_at, level = excluded.level, "
    "level_source = excluded.level_source, labels = excluded.labels, "
    "annotations = excluded.annotations, incident_id = excluded.incident_id, "
    "last_seen_at = excluded.last_seen_at"
)
_ALERT_UPSERT = (
    _ALERT_INSERT + "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)" + _ALERT_CONFLICT
)
_NOTIFICATION_INSERT = (
    "INSERT INTO notifications (identity, group_key, status, level, received_at, "
    "last_received_at, external_url, receiver, payload) "
    "VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8) ON CONFLICT (identity) DO NOTHING"
)
_CURRENT_INCIDENT = (
    "SELECT id, level, status, resolved_at FROM incidents "
    "WHERE group_key = $1 AND closed_at IS NULL"
)
_INCIDENT_TOUCH = "UPDATE incidents SET level = $2, summary = $3, updated_at = $4 WHERE id = $1"
# PostgreSQL, one round trip: the notification's insert and, taken in the same snapshot under
# the group's lock, its incident (row-locked) and which of its firing alerts were firing
# already ($9: their fingerprints). Both CTEs read only tables the insert does not touch.
_PG_NOTIFICATION_WITH_GROUP_STATE = (
    "WITH inserted AS (" + _NOTIFICATION_INSERT + " RETURNING id), "  # noqa: S608 - constants
    "current AS (" + _CURRENT_INCIDENT.replace("$1", "$2") + " FOR UPDATE), "
    "firing AS MATERIALIZED (SELECT fingerprint, starts_at FROM alerts WHERE group_key = $2 "
    "AND fingerprint = ANY($9::text[]) AND status = 'firing') "
    "SELECT (SELECT id FROM inserted) AS notification_id, c.id, c.level, c.status, "
    "c.resolved_at, ARRAY(SELECT fingerprint FROM firing) AS fingerprints, "
    "ARRAY(SELECT starts_at FROM firing) AS starts FROM (SELECT 1) AS one "
    "LEFT JOIN current AS c ON true"
)
# The arrays ``_outbox_columns`` gives, in this order.
_OUTBOX_ARRAYS = (
    ("delivery_id", "text"),
    ("pair_key", "text"),
    ("purpose", "text"),
    ("incident_id", "text"),
    ("group_key", "text"),
    ("channel", "text"),
    ("contact", "text"),
    ("status", "text"),
    ("level", "int"),
    ("next_attempt_at", "float8"),
    ("rendered", "text"),
    ("held", "text"),
)


def _pg_enqueue_ctes(now: str, first: int) -> str:
    """PostgreSQL CTEs enqueueing the rows whose arrays start at parameter ``$first``.

    ``queued`` holds the delivery ids inserted (a replayed one is not); a held row inserted
    gets its timeline event with it. ORDER BY keeps the ids in the planned order.
    """
    arrays = ", ".join(f"${first + n}::{kind}[]" for n, (_, kind) in enumerate(_OUTBOX_ARRAYS))
    names = ", ".join(name for name, _ in _OUTBOX_ARRAYS)
    return (
        f"planned AS MATERIALIZED (SELECT * FROM unnest({arrays}) WITH ORDINALITY "  # noqa: S608 - constants
        f"AS p ({names}, n)), "
        "queued AS (INSERT INTO outbox (delivery_id, pair_key, purpose, incident_id, group_key, "
        "channel, contact, status, level, state, attempts, created_at, next_attempt_at, "
        "rendered) SELECT delivery_id, pair_key, purpose, incident_id, group_key, channel, "
        f"contact, status, level, 'pending', 0, {now}, next_attempt_at, rendered FROM planned "
        "ORDER BY n ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id), "
        "held AS (INSERT INTO incident_events (incident_id, at, kind, detail) "
        f"SELECT p.incident_id, {now}, 'held', p.held FROM planned AS p "
        "JOIN queued USING (delivery_id) WHERE p.held IS NOT NULL ORDER BY p.n) "
    )


_PG_ENQUEUE = (
    "WITH "  # noqa: S608 - constants
    + _pg_enqueue_ctes("$1", 2)
    + "SELECT COUNT(*) AS enqueued FROM queued"
)
# PostgreSQL, one round trip: every write of a notification after its decisions. $1 group,
# $2-$9 its alerts' arrays, $10 incident, $11 time, $12 identity, $13-$15 whether and how the
# incident is touched (level, summary), $16 on the outbox rows. The CTEs write different
# tables (a row at most once each), so their order does not matter.
_PG_NOTIFICATION_WRITES = (
    "WITH touched AS (UPDATE incidents SET level = $14, summary = $15, updated_at = $11 "  # noqa: S608 - constants
    "WHERE id = $10 AND $13::bool), "
    "linked AS (UPDATE notifications SET incident_id = $10 WHERE identity = $12), "
    "stored AS ("
    + _ALERT_INSERT
    + "SELECT $1, f, s, st, e, l, ls, lb, an, $10, $11, $11 FROM unnest($2::text[], "
    "$3::float8[], $4::text[], $5::float8[], $6::int[], $7::text[], $8::text[], $9::text[]) "
    "AS u (f, s, st, e, l, ls, lb, an)"
    + _ALERT_CONFLICT
    + "), "
    + _pg_enqueue_ctes("$11", 16)
    + "SELECT COUNT(*) AS enqueued FROM queued"
)


def _alert_rows(batch: IngestBatch) -> list[tuple[Any, ...]]:
    # One row per alert; a copy repeated in the same payload counts as its last copy (an
    # upsert may touch a row once per statement on PostgreSQL).
    rows = {
        (a.fingerprint, a.starts_at): (
            a.fingerprint,
            a.starts_at,
            a.status,
            a.ends_at,
            a.level,
            a.level_source,
            _dumps(a.labels),
            _dumps(a.annotations),
        )
        for a in batch.alerts
    }
    return list(rows.values())


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column arrays (for ``unnest``), empty arrays for no rows."""
    return [[row[n] for row in rows] for n in range(width)]


def _outbox_columns(rows: Sequence[NewOutboxRow], now: float) -> list[list[Any]]:
    """The ``_OUTBOX_ARRAYS`` of ``rows``, a repeated delivery id as its first copy.

    The insert would keep the first copy alone anyway, but every copy would join it in the
    held events: one row, one event, as on SQLite.
    """
    first: dict[str, NewOutboxRow] = {}
    for row in rows:
        first.setdefault(row.delivery_id, row)
    return _columns(
        [
            (
                r.delivery_id,
                r.pair_key,
                r.purpose,
                r.incident_id,
                r.group_key,
                r.channel,
                r.contact,
                r.status,
                r.level,
                max(now, r.not_before),
                _dumps(r.rendered),
                # A held row's timeline event, written with it (see _insert_outbox).
                _dumps(_held_detail(r)) if r.purpose == "held" and r.incident_id else None,
            )
            for r in first.values()
        ],
        len(_OUTBOX_ARRAYS),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class SqlStore:
    """The Store on top of a Database; queries are shared, the dialect picks the locking."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.journal = Journal(db)

    @property
    def dialect(self) -> Dialect:
        """Which SQL the backend speaks."""
        return self.db.dialect

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied now."""
        applied: list[int] = []
        async with self.db.transaction(lock_key="schema_migrations") as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            rows = await conn.fetch("SELECT version FROM schema_migrations")
            done = {int(r["version"]) for r in rows}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.sql(self.dialect):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    datetime.now(UTC).isoformat(),
                )
                applied.append(migration.version)
        return applied

    async def schema_version(self) -> int:
        """Highest applied migration."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT MAX(version) AS v FROM schema_migrations")
        return int(row["v"]) if row and row["v"] is not None else 0

    async def ingest(
        self, batch: IngestBatch, planner: Planner, *, journal_id: int | None = None
    ) -> IngestResult:
        """See Store.ingest."""

        async def work(conn: Connection) -> IngestResult:
            if journal_id is not None and not await self.journal.take(
                conn, journal_id, lock_key=batch.group_key
            ):
                return IngestResult(
                    duplicate=False, incident_id=None, enqueued=0, already_processed=True
                )
            return await self._ingest(conn, batch, planner)

        # Taking the journal row also takes the group's lock (one round trip, not two).
        lock_key = batch.group_key if journal_id is None else None
        return await self.db.run(work, lock_key=lock_key)

    async def _ingest(self, conn: Connection, batch: IngestBatch, planner: Planner) -> IngestResult:
        # Reads, then the decisions in Python, then the writes. On PostgreSQL the reads are one
        # statement and the writes another: a notification to an open incident costs five
        # round trips (begin, journal row and lock, reads, writes, commit) whatever its size;
        # opening, resolving or raising an incident adds its own few.
        now = batch.received_at
        found = await self._insert_notification(conn, batch)
        if found is None:
            row = await conn.fetchrow(
                "UPDATE notifications SET duplicates = duplicates + 1, last_received_at = $2 "
                "WHERE identity = $1 RETURNING incident_id",
                batch.identity,
                now,
            )
            return IngestResult(
                duplicate=True, incident_id=row["incident_id"] if row else None, enqueued=0
            )

        current, already_firing = found
        new_firing = tuple(
            a.fingerprint
            for a in batch.alerts
            if a.status == "firing" and (a.fingerprint, a.starts_at) not in already_firing
        )
        incident_id, level, opened, touch = await self._update_incident(conn, batch, current)
        firing_routes: tuple[Route, ...] = ()
        if incident_id is not None and batch.status == "resolved":
            rows = await conn.fetch(
                # Everyone paged for the incident hears it ended: the first audience, the
                # escalated and re-paged ones, and held pages once they went out in a digest.
                "SELECT DISTINCT channel, contact FROM outbox WHERE incident_id = $1 "
                "AND status = 'firing' AND ((purpose IN ('notification', 'escalation', 'repage') "
                "AND state IN ('pending', 'delivered')) "
                "OR (purpose = 'held' AND state = 'digested'))",
                incident_id,
            )
            firing_routes = tuple(sorted(Route(r["channel"], r["contact"]) for r in rows))
        state = GroupState(
            incident_id=incident_id,
            incident_level=level,
            opened=opened,
            firing_routes=firing_routes,
            new_firing=new_firing,
        )
        planned = planner(state)
        enqueued = await self._write_notification(
            conn, batch, incident_id, level if touch else None, planned
        )
        return IngestResult(
            duplicate=False,
            incident_id=incident_id,
            enqueued=enqueued,
            channels=tuple(sorted({r.channel for r in planned})),
            level=level,
        )

    async def _insert_notification(
        self, conn: Connection, batch: IngestBatch
    ) -> tuple[Row | None, set[tuple[str, float]]] | None:
        """Record the notification; None for a duplicate, else the group's state before it.

        The state is the group's incident that is not closed (locked on PostgreSQL) and the
        (fingerprint, start) of this notification's firing alerts the group had firing.
        """
        firing = sorted({a.fingerprint for a in batch.alerts if a.status == "firing"})
        args = (
            batch.identity,
            batch.group_key,
            batch.status,
            batch.level,
            batch.received_at,
            batch.external_url,
            batch.receiver,
            batch.payload,
        )
        if self.dialect == "postgres":
            row = await conn.fetchrow(_PG_NOTIFICATION_WITH_GROUP_STATE, *args, firing)
            if row is None or row["notification_id"] is None:
                return None
            # The row holds the incident's columns (all NULL without one) beside the others.
            current = row if row["id"] is not None else None
            return current, set(zip(row["fingerprints"], row["starts"], strict=True))
        if await conn.fetchrow(_NOTIFICATION_INSERT + " RETURNING id", *args) is None:
            return None
        found: set[tuple[str, float]] = set()
        for start in range(0, len(firing), _LOOKUP_CHUNK):
            chunk = firing[start : start + _LOOKUP_CHUNK]
            marks = ", ".join(f"${n}" for n in range(2, len(chunk) + 2))
            rows = await conn.fetch(
                "SELECT fingerprint, starts_at FROM alerts "  # noqa: S608 - placeholders only
                f"WHERE group_key = $1 AND fingerprint IN ({marks}) AND status = 'firing'",
                batch.group_key,
                *chunk,
            )
            found.update((r["fingerprint"], float(r["starts_at"])) for r in rows)
        current = await conn.fetchrow(_CURRENT_INCIDENT, batch.group_key)
        return current, found

    async def _write_notification(
        self,
        conn: Connection,
        batch: IngestBatch,
        incident_id: str | None,
        touch_level: int | None,
        planned: Sequence[NewOutboxRow],
    ) -> int:
        """The notification's alerts, its incident link, the incident's touch and its outbox.

        ``touch_level`` set: the incident takes that level, the summary and the time (the
        update every later notification of an open incident makes). Returns rows enqueued.
        """
        now = batch.received_at
        alerts = _alert_rows(batch)
        if self.dialect == "postgres":
            row = await conn.fetchrow(
                _PG_NOTIFICATION_WRITES,
                batch.group_key,
                *_columns(alerts, 8),
                incident_id,
                now,
                batch.identity,
                touch_level is not None,
                touch_level,
                batch.summary,
                *_outbox_columns(planned, now),
            )
            return int(row["enqueued"]) if row is not None else 0
        if touch_level is not None and incident_id is not None:
            await conn.execute(_INCIDENT_TOUCH, incident_id, touch_level, batch.summary, now)
        for alert in alerts:
            await conn.execute(_ALERT_UPSERT, batch.group_key, *alert, incident_id, now)
        await conn.execute(
            "UPDATE notifications SET incident_id = $2 WHERE identity = $1",
            batch.identity,
            incident_id,
        )
        return await self._insert_outbox(conn, planned, now=now)

    async def _update_incident(
        self, conn: Connection, batch: IngestBatch, current: Row | None
    ) -> tuple[str | None, int, bool, bool]:
        """Open, reopen, raise or resolve the group's incident.

        Returns (id, level, newly opened, touch): touch means the incident's routine update
        (level, summary, time) is still to be written, with the notification's other writes.
        """
        now = batch.received_at
        if batch.status == "resolved":
            if current is None:
                return None, batch.level, False, False
            if current["status"] in ACTIVE_STATUSES:
                await conn.execute(
                    "UPDATE incidents SET status = 'resolved', resolved_at = $2, updated_at = $2 "
                    "WHERE id = $1",
                    current["id"],
                    now,
                )
                await self._event(conn, current["id"], now, "resolved", {})
            return current["id"], int(current["level"]), False, False

        if current is not None and current["status"] not in ACTIVE_STATUSES:
            resolved_at = current["resolved_at"]
            if resolved_at is not None and now - float(resolved_at) <= batch.reopen_within:
                await conn.execute(
                    "UPDATE incidents SET status = 'open', resolved_at = NULL, updated_at = $2 "
                    "WHERE id = $1",
                    current["id"],
                    now,
                )
                await self._event(conn, current["id"], now, "reopened", {})
            else:
                await conn.execute(
                    "UPDATE incidents SET status = 'closed', closed_at = $2, updated_at = $2 "
                    "WHERE id = $1",
                    current["id"],
                    now,
                )
                await self._event(conn, current["id"], now, "closed", {})
                current = None

        if current is None:
            incident_id = incident_id_for(batch.group_key, batch.identity, now)
            await conn.execute(
                "INSERT INTO incidents (id, group_key, level, system, component, summary, "
                "status, opened_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $7)",
                incident_id,
                batch.group_key,
                batch.level,
                batch.system,
                batch.component,
                batch.summary,
                now,
            )
            await self._level(conn, incident_id, now, None, batch.level, "opened")
            await self._event(conn, incident_id, now, "opened", {"level": batch.level})
            return incident_id, batch.level, True, False

        incident_id = current["id"]
        level = int(current["level"])
        # A repeat or a lower alert never lowers a level (an escalated incident keeps its own).
        if batch.level > level:
            await self._level(conn, incident_id, now, level, batch.level, "alert")
            await self._event(
                conn, incident_id, now, "level_raised", {"from": level, "to": batch.level}
            )
            level = batch.level
        return incident_id, level, False, True

    async def _level(
        self,
        conn: Connection,
        incident_id: str,
        at: float,
        from_level: int | None,
        to_level: int,
        reason: str,
    ) -> None:
        await conn.execute(
            "INSERT INTO incident_levels (incident_id, at, from_level, to_level, reason) "
            "VALUES ($1, $2, $3, $4, $5)",
            incident_id,
            at,
            from_level,
            to_level,
            reason,
        )

    async def _event(
        self, conn: Connection, incident_id: str, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        await conn.execute(
            "INSERT INTO incident_events (incident_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
            incident_id,
            at,
            kind,
            _dumps(detail),
        )

    async def add_event(
        self, incident_id: str, *, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        """Append a timeline event (issue 5: acknowledgements, escalations, notes)."""
        async with self.db.transaction() as conn:
            await self._event(conn, incident_id, at, kind, detail)

    async def _insert_outbox(
        self, conn: Connection, rows: Sequence[NewOutboxRow], *, now: float
    ) -> int:
        if self.dialect == "postgres":
            if not rows:
                return 0
            found = await conn.fetchrow(_PG_ENQUEUE, now, *_outbox_columns(rows, now))
            return int(found["enqueued"]) if found is not None else 0
        count = 0
        for row in rows:
            result = await conn.fetchrow(
                "INSERT INTO outbox (delivery_id, pair_key, purpose, incident_id, group_key, "
                "channel, contact, status, level, state, attempts, created_at, next_attempt_at, "
                "rendered) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $11, "
                "$12) ON CONFLICT (delivery_id) DO NOTHING RETURNING id",
                row.delivery_id,
                row.pair_key,
                row.purpose,
                row.incident_id,
                row.group_key,
                row.channel,
                row.contact,
                row.status,
                row.level,
                now,
                max(now, row.not_before),
                _dumps(row.rendered),
            )
            count += result is not None
            if result is not None and row.purpose == "held" and row.incident_id is not None:
                # The timeline shows a page that waits for business hours, and until when; it
                # is written with the row, so a replayed notification adds no second event.
                await self._event(conn, row.incident_id, now, "held", _held_detail(row))
        return count

    async def insert_outbox(
        self, conn: Connection, rows: Sequence[NewOutboxRow], *, now: float
    ) -> int:
        """Enqueue inside the caller's transaction (lifecycle steps); returns rows inserted."""
        return await self._insert_outbox(conn, rows, now=now)

    async def insert_event(
        self, conn: Connection, incident_id: str, *, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        """Append a timeline event inside the caller's transaction."""
        await self._event(conn, incident_id, at, kind, detail)

    async def enqueue(self, rows: Sequence[NewOutboxRow], *, now: float) -> int:
        """See Store.enqueue."""

        async def work(conn: Connection) -> int:
            return await self._insert_outbox(conn, rows, now=now)

        return await self.db.run(work)

    async def claim(
        self, channel: str, *, now: float, limit: int, lease: float, owner: str
    ) -> list[OutboxRow]:
        """See Store.claim."""
        # Only the oldest pending row of each (group, channel, recipient) may go, so a resolved
        # message never overtakes its firing one. The heads are found by one grouped scan of
        # the channel's pending rows: linear in the backlog whatever plan the database picks
        # (a NOT EXISTS per candidate became quadratic on PostgreSQL with a deep outbox, past
        # the command timeout, and stopped the channel). ``o.state`` is tested again on the row
        # itself: PostgreSQL re-checks only o's own conditions on a row that a peer changed
        # after this statement's snapshot, and a peer that claimed, sent and marked it
        # delivered meanwhile has cleared its lease, so without it the row was claimed (and
        # sent) a second time. Among the heads the highest level goes first: Slack and email
        # carry every level, and a Level 4 must not wait behind a flood of Level 1 messages
        # queued there (a throttled Slack sends about one a second).
        pick = (
            "SELECT o.id FROM outbox o WHERE o.id IN (SELECT MIN(h.id) FROM outbox h "
            "WHERE h.channel = $3 AND h.state = 'pending' GROUP BY h.pair_key) "
            "AND o.state = 'pending' AND o.next_attempt_at <= $4 "
            "AND (o.lease_until IS NULL OR o.lease_until <= $4) "
            "ORDER BY o.level DESC, o.next_attempt_at, o.id LIMIT $5"
        )
        if self.dialect == "postgres":
            pick += " FOR UPDATE OF o SKIP LOCKED"

        # The marks clear lease_owner, so a claimable row that still has one was left by an
        # attempt that ended without an outcome (its holder died, or hung past the lease): that
        # send may have reached the upstream. SET reads the old values on SQLite and
        # PostgreSQL alike, so the doubt is decided from the previous attempt in one statement.
        rows = await self.db.statement(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2, "  # noqa: S608 - constants
            "attempts = attempts + 1, in_doubt_since = CASE WHEN lease_owner IS NOT NULL "
            "THEN COALESCE(in_doubt_since, attempt_started_at, created_at) "
            "ELSE in_doubt_since END, attempt_started_at = $4 "
            f"WHERE id IN ({pick}) RETURNING {_OUTBOX_COLUMNS}",
            owner,
            now + lease,
            channel,
            now,
            limit,
        )
        return sorted((_outbox_row(r) for r in rows), key=lambda r: (-r.level, r.id))

    async def mark_delivered(
        self,
        row: OutboxRow,
        *,
        owner: str,
        now: float,
        upstream_id: str | None,
        reconciled: bool = False,
    ) -> bool:
        """See Store.mark_delivered."""
        detail = _dumps(_delivered_detail(row, reconciled=reconciled))
        if self.dialect == "postgres":
            # One round trip instead of four (BEGIN, UPDATE, INSERT, COMMIT): the event is
            # written by the same statement, only when the update matched.
            rows = await self.db.statement(
                "WITH done AS (UPDATE outbox SET state = 'delivered', delivered_at = $3, "
                "upstream_id = $4, lease_owner = NULL, lease_until = NULL, last_error = NULL "
                "WHERE id = $1 AND lease_owner = $2 AND state = 'pending' "
                "RETURNING id, incident_id), "
                "event AS (INSERT INTO incident_events (incident_id, at, kind, detail) "
                "SELECT incident_id, $3, 'delivered', $5 FROM done WHERE incident_id IS NOT NULL) "
                "SELECT id FROM done",
                row.id,
                owner,
                now,
                upstream_id,
                detail,
            )
            return bool(rows)

        async def work(conn: Connection) -> bool:
            done = await conn.fetchrow(
                "UPDATE outbox SET state = 'delivered', delivered_at = $3, upstream_id = $4, "
                "lease_owner = NULL, lease_until = NULL, last_error = NULL "
                "WHERE id = $1 AND lease_owner = $2 AND state = 'pending' RETURNING id",
                row.id,
                owner,
                now,
                upstream_id,
            )
            if done is not None and row.incident_id is not None:
                await self._event(
                    conn,
                    row.incident_id,
                    now,
                    "delivered",
                    _delivered_detail(row, reconciled=reconciled),
                )
            return done is not None

        return await self.db.run(work)

    async def mark_retry(
        self,
        row: OutboxRow,
        *,
        owner: str,
        now: float,
        next_attempt_at: float,
        error: str,
        refund_attempt: bool = False,
        in_doubt: bool = False,
    ) -> bool:
        """See Store.mark_retry."""
        # A doubt already recorded is kept: an earlier attempt may still be the one that arrived.
        doubt = (row.attempt_started_at or row.created_at) if in_doubt else None

        async def work(conn: Connection) -> bool:
            done = await conn.fetchrow(
                "UPDATE outbox SET next_attempt_at = $3, last_error = $4, lease_owner = NULL, "
                "lease_until = NULL, attempts = attempts - $5, "
                "in_doubt_since = COALESCE(in_doubt_since, $6) "
                "WHERE id = $1 AND lease_owner = $2 AND state = 'pending' RETURNING id",
                row.id,
                owner,
                next_attempt_at,
                error[:500],
                1 if refund_attempt else 0,
                doubt,
            )
            return done is not None

        return await self.db.run(work)

    async def mark_dead(self, row: OutboxRow, *, owner: str, now: float, error: str) -> bool:
        """See Store.mark_dead."""

        async def work(conn: Connection) -> bool:
            done = await conn.fetchrow(
                "UPDATE outbox SET state = 'dead', last_error = $3, lease_owner = NULL, "
                "lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND state = 'pending' "
                "RETURNING id, attempts",
                row.id,
                owner,
                error[:500],
            )
            if done is None:
                return False
            await conn.execute(
                "INSERT INTO dead_letters (outbox_id, delivery_id, channel, contact, incident_id, "
                "failed_at, attempts, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (outbox_id) DO NOTHING",
                row.id,
                row.delivery_id,
                row.channel,
                row.contact,
                row.incident_id,
                now,
                int(done["attempts"]),
                error[:500],
            )
            if row.incident_id is not None:
                await self._event(
                    conn,
                    row.incident_id,
                    now,
                    "dead_letter",
                    {"channel": row.channel, "contact": row.contact, "status": row.status},
                )
            return True

        return await self.db.run(work)

    async def next_due(self, channel: str) -> float | None:
        """See Store.next_due."""

        found = await self.db.statement(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at "
            "THEN lease_until ELSE next_attempt_at END) AS due "
            "FROM outbox WHERE channel = $1 AND state = 'pending'",
            channel,
        )
        row = found[0] if found else None
        return float(row["due"]) if row and row["due"] is not None else None

    async def outbox_stats(self) -> list[ChannelStats]:
        """See Store.outbox_stats."""

        async def work(conn: Connection) -> list[Row]:
            return await conn.fetch(
                "SELECT channel, COUNT(*) AS depth, MIN(created_at) AS oldest FROM outbox "
                "WHERE state = 'pending' GROUP BY channel"
            )

        rows = await self.db.run(work)
        return [
            ChannelStats(
                channel=r["channel"],
                depth=int(r["depth"]),
                oldest_created_at=float(r["oldest"]) if r["oldest"] is not None else None,
            )
            for r in rows
        ]

    async def open_incidents_by_level(self) -> dict[int, int]:
        """See Store.open_incidents_by_level."""

        async def work(conn: Connection) -> list[Row]:
            return await conn.fetch(
                "SELECT level, COUNT(*) AS n FROM incidents "
                "WHERE status IN ('open', 'acknowledged') GROUP BY level"
            )

        rows = await self.db.run(work)
        return {int(r["level"]): int(r["n"]) for r in rows}

    async def list_incidents(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[Incident]:
        """See Store.list_incidents."""
        async with self.db.transaction() as conn:
            if status is None:
                rows = await conn.fetch(
                    "SELECT * FROM incidents ORDER BY opened_at DESC, id LIMIT $1", limit
                )
            else:
                rows = await conn.fetch(
                    "SELECT * FROM incidents WHERE status = $1 "
                    "ORDER BY opened_at DESC, id LIMIT $2",
                    status,
                    limit,
                )
        return [_incident(r) for r in rows]

    async def get_incident(self, incident_id: str) -> Incident | None:
        """See Store.get_incident."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
            if row is None:
                return None
            levels = await conn.fetch(
                "SELECT at, from_level, to_level, reason FROM incident_levels "
                "WHERE incident_id = $1 ORDER BY at, id",
                incident_id,
            )
            events = await conn.fetch(
                "SELECT at, kind, detail FROM incident_events WHERE incident_id = $1 "
                "ORDER BY at, id",
                incident_id,
            )
            deliveries = await conn.fetch(
                "SELECT channel, contact, status, purpose, state, attempts, created_at, "
                "delivered_at, last_error FROM outbox WHERE incident_id = $1 ORDER BY id",
                incident_id,
            )
        return replace(
            _incident(row),
            levels=tuple(dict(r) for r in levels),
            events=tuple({**dict(r), "detail": json.loads(r["detail"])} for r in events),
            deliveries=tuple(dict(r) for r in deliveries),
        )

    async def ping(self) -> None:
        """See Store.ping."""

        async def work(conn: Connection) -> None:
            await conn.fetchrow("SELECT 1 AS one")

        await self.db.run(work)

    async def close(self) -> None:
        """See Store.close."""
        await self.db.close()
