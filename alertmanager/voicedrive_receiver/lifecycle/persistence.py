"""The lifecycle's reads and writes on the receiver's store (same tables, same transactions).

Every timer is derived from stored facts (opening, level history, acknowledgement, resolution,
re-pages), so timers survive restarts without a separate timer table. What makes a step happen
once across replicas is the ``lifecycle_steps`` row keyed by (incident, step): the step is
applied in the same transaction that inserts the row, under the group's lock, and an insert
that conflicts means another replica already did it.

The store keeps the core's status names: ``resolved`` is the lifecycle's monitoring state (the
30-minute watch), which the scheduler ends with ``closed``.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from voicedrive_receiver.lifecycle.errors import LifecycleError
from voicedrive_receiver.lifecycle.escalation import (
    Action,
    Close,
    Escalate,
    EscalationPolicy,
    LevelChange,
    Lifecycle,
    Repage,
    State,
    TransitionError,
    acknowledge,
    apply_step,
    evaluate_sla,
    next_step,
    resolve,
)
from voicedrive_receiver.store.base import Connection, NewOutboxRow, Row, SqlStore

_STATE_OF_STATUS = {
    "open": State.OPEN,
    "acknowledged": State.ACKNOWLEDGED,
    "resolved": State.MONITORING,
    "monitoring": State.MONITORING,
    "closed": State.CLOSED,
}
_STATUS_OF_STATE = {
    State.OPEN: "open",
    State.ACKNOWLEDGED: "acknowledged",
    State.MONITORING: "resolved",
    State.CLOSED: "closed",
}
# How many steps one pass may apply to one incident (catching up after a long outage).
_MAX_STEPS = 50


class UnknownIncident(LifecycleError):
    """No incident has the given id (the API answers 404)."""


def when(seconds: float | None) -> datetime | None:
    """UNIX seconds from the store as an aware UTC datetime."""
    return None if seconds is None else datetime.fromtimestamp(float(seconds), UTC)


def _ts(moment: datetime) -> float:
    return moment.timestamp()


@dataclass(frozen=True)
class StoredIncident:
    """An incident row with the facts the lifecycle needs."""

    id: str
    group_key: str
    system: str
    component: str
    summary: str
    lifecycle: Lifecycle
    record: Mapping[str, Any]
    events: tuple[Mapping[str, Any], ...]
    steps: frozenset[str]
    # The earliest startsAt of the incident's alerts (read with the timeline only).
    first_started_at: datetime | None = None


def _reason(stored: str) -> Any:
    if stored in ("opened", "escalated"):
        return stored
    return "raised"


def lifecycle_of(
    row: Mapping[str, Any],
    levels: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
) -> Lifecycle:
    """Rebuild the pure Lifecycle from stored rows."""
    opened = when(row["opened_at"])
    assert opened is not None
    history = tuple(
        LevelChange(
            at=when(lv["at"]) or opened,
            from_level=None if lv["from_level"] is None else int(lv["from_level"]),
            to_level=int(lv["to_level"]),
            reason=_reason(str(lv["reason"])),
        )
        for lv in levels
    ) or (LevelChange(opened, None, int(row["level"]), "opened"),)
    restarts = [e for e in events if e["kind"] in ("reopened", "repaged")]
    clock_from = max([history[-1].at, *(when(e["at"]) or opened for e in restarts)])
    return Lifecycle(
        state=_STATE_OF_STATUS.get(str(row["status"]), State.OPEN),
        level=int(row["level"]),
        opened_at=opened,
        clock_from=clock_from,
        history=history,
        acknowledged_at=when(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        resolved_at=when(row["resolved_at"]),
        closed_at=when(row["closed_at"]),
        repages=sum(1 for e in events if e["kind"] == "repaged"),
        reopened=sum(1 for e in events if e["kind"] == "reopened"),
    )


async def load_incident(
    conn: Connection,
    incident_id: str,
    *,
    lock: bool = False,
    dialect: str = "sqlite",
    timeline: bool = True,
) -> StoredIncident | None:
    """The incident with its history; ``lock`` takes its row lock on PostgreSQL.

    Without ``timeline`` only the events the Lifecycle needs are read (``events`` then holds
    just those): a busy incident has thousands of delivery events, and a scheduler tick must
    not read them all for every incident.
    """
    suffix = " FOR UPDATE" if lock and dialect == "postgres" else ""
    row = await conn.fetchrow(
        f"SELECT * FROM incidents WHERE id = $1{suffix}",  # noqa: S608 - constant suffix
        incident_id,
    )
    if row is None:
        return None
    levels = await conn.fetch(
        "SELECT at, from_level, to_level, reason FROM incident_levels WHERE incident_id = $1 "
        "ORDER BY at, id",
        incident_id,
    )
    first_started_at: datetime | None = None
    if timeline:
        raw_events = await conn.fetch(
            "SELECT at, kind, detail FROM incident_events WHERE incident_id = $1 ORDER BY at, id",
            incident_id,
        )
        first = await conn.fetchrow(
            # group_key first: the alerts primary key's prefix, so no scan of other groups.
            "SELECT MIN(starts_at) AS first FROM alerts WHERE group_key = $1 AND incident_id = $2",
            row["group_key"],
            incident_id,
        )
        if first is not None and first["first"] is not None:
            first_started_at = datetime.fromtimestamp(float(first["first"]), UTC)
    else:
        # Literal kinds, matching the partial index incident_events_restarts (schema v3).
        raw_events = await conn.fetch(
            "SELECT at, kind, detail FROM incident_events WHERE incident_id = $1 "
            "AND kind IN ('reopened', 'repaged') ORDER BY at, id",
            incident_id,
        )
    events = tuple({**dict(e), "detail": json.loads(e["detail"] or "{}")} for e in raw_events)
    steps = await conn.fetch("SELECT step FROM lifecycle_steps WHERE incident_id = $1", incident_id)
    return StoredIncident(
        id=row["id"],
        group_key=row["group_key"],
        system=row["system"],
        component=row["component"],
        summary=row["summary"],
        lifecycle=lifecycle_of(row, levels, events),
        record=json.loads(row["record"] or "{}"),
        events=events,
        steps=frozenset(str(s["step"]) for s in steps),
        first_started_at=first_started_at,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


async def _event(
    conn: Connection, incident_id: str, at: float, kind: str, detail: Mapping[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO incident_events (incident_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        incident_id,
        at,
        kind,
        _dumps(detail),
    )


async def _claim_step(
    conn: Connection, incident_id: str, step: str, due: float, now: float
) -> bool:
    row = await conn.fetchrow(
        "INSERT INTO lifecycle_steps (incident_id, step, due_at, done_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (incident_id, step) DO NOTHING RETURNING step",
        incident_id,
        step,
        due,
        now,
    )
    return row is not None


@dataclass(frozen=True)
class Applied:
    """What one scheduler pass did to one incident (for metrics, logs and wake-ups)."""

    incident_id: str
    actions: tuple[Action, ...] = ()
    breaches: tuple[tuple[int, str], ...] = ()
    acknowledged_after: tuple[int, float] | None = None
    resolved_after: tuple[int, float] | None = None
    channels: tuple[str, ...] = ()


# plan(incident, action, now, alerts) -> the outbox rows that announce ``action``.
StepPlanner = Callable[
    [StoredIncident, Action, float, list[dict[str, Any]]], Sequence[NewOutboxRow]
]


class LifecycleStore:
    """Lifecycle operations on a SqlStore; every method may raise StoreUnavailable."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    @property
    def _dialect(self) -> str:
        return self.store.dialect

    async def _group_of(self, incident_id: str) -> str:
        async with self.store.db.transaction() as conn:
            row = await conn.fetchrow("SELECT group_key FROM incidents WHERE id = $1", incident_id)
        if row is None:
            raise UnknownIncident(f"no incident {incident_id!r}")
        return str(row["group_key"])

    async def get(self, incident_id: str) -> StoredIncident:
        """One incident; UnknownIncident when there is none."""
        async with self.store.db.transaction() as conn:
            found = await load_incident(conn, incident_id)
        if found is None:
            raise UnknownIncident(f"no incident {incident_id!r}")
        return found

    async def _transition(
        self,
        incident_id: str,
        change: Callable[[Lifecycle], Lifecycle],
        kind: str,
        detail: Mapping[str, Any],
        now: float,
    ) -> StoredIncident:
        group = await self._group_of(incident_id)
        async with self.store.db.transaction(lock_key=group) as conn:
            found = await load_incident(conn, incident_id, lock=True, dialect=self._dialect)
            if found is None:
                raise UnknownIncident(f"no incident {incident_id!r}")
            after = change(found.lifecycle)
            if after != found.lifecycle:
                await conn.execute(
                    "UPDATE incidents SET status = $2, acknowledged_at = $3, acknowledged_by = $4, "
                    "resolved_at = $5, updated_at = $6 WHERE id = $1",
                    incident_id,
                    _STATUS_OF_STATE[after.state],
                    _ts(after.acknowledged_at) if after.acknowledged_at else None,
                    after.acknowledged_by,
                    _ts(after.resolved_at) if after.resolved_at else None,
                    now,
                )
                await _event(conn, incident_id, now, kind, detail)
            return replace(found, lifecycle=after)

    async def acknowledge(self, incident_id: str, *, by: str, now: datetime) -> StoredIncident:
        """Acknowledge (escalation stops; ``by`` is the responder of record)."""
        return await self._transition(
            incident_id,
            lambda lc: acknowledge(lc, now, by),
            "acknowledged",
            {"by": by.strip()},
            _ts(now),
        )

    async def resolve(self, incident_id: str, *, by: str, now: datetime) -> StoredIncident:
        """Resolve by hand: the 30-minute watch starts."""

        def change(lc: Lifecycle) -> Lifecycle:
            if lc.state is State.CLOSED:
                raise TransitionError("the incident is closed")
            return resolve(lc, now)

        return await self._transition(incident_id, change, "resolved", {"by": by.strip()}, _ts(now))

    async def update_record(
        self, incident_id: str, fields: Mapping[str, str], *, by: str, now: datetime
    ) -> StoredIncident:
        """Merge responder-written record fields."""
        group = await self._group_of(incident_id)
        async with self.store.db.transaction(lock_key=group) as conn:
            found = await load_incident(conn, incident_id, lock=True, dialect=self._dialect)
            if found is None:
                raise UnknownIncident(f"no incident {incident_id!r}")
            record = {**found.record, **fields}
            await conn.execute(
                "UPDATE incidents SET record = $2, updated_at = $3 WHERE id = $1",
                incident_id,
                _dumps(record),
                _ts(now),
            )
            await _event(
                conn, incident_id, _ts(now), "record_updated", {"fields": sorted(fields), "by": by}
            )
        return replace(found, record=record)

    async def active(self) -> list[tuple[str, str]]:
        """(id, group key) of every incident not closed."""

        async def work(conn: Connection) -> list[Row]:
            return await conn.fetch(
                "SELECT id, group_key FROM incidents WHERE closed_at IS NULL ORDER BY opened_at"
            )

        rows = await self.store.db.run(work)
        return [(str(r["id"]), str(r["group_key"])) for r in rows]

    async def run_due(
        self,
        incident_id: str,
        group_key: str,
        *,
        now: datetime,
        policy: EscalationPolicy,
        plan: StepPlanner,
    ) -> Applied:
        """Apply every step due by ``now`` for one incident, once across replicas.

        One unit of work (SQLite: a share of a group commit on the database thread, never a
        lock held across event-loop hops; PostgreSQL: one transaction under the group's lock).
        """
        ts = _ts(now)

        async def work(conn: Connection) -> Applied:
            found = await load_incident(
                conn, incident_id, lock=True, dialect=self._dialect, timeline=False
            )
            if found is None:
                return Applied(incident_id)
            lc = found.lifecycle
            actions: list[Action] = []
            channels: set[str] = set()
            for _ in range(_MAX_STEPS):
                step = next_step(lc, policy, now)
                if not isinstance(step, Escalate | Repage | Close):
                    break
                if not await _claim_step(conn, incident_id, step.key, _ts(step.due_at), ts):
                    # Another replica applied it and our view is stale: leave it to the next pass.
                    break
                lc = apply_step(lc, step)
                await self._apply(conn, found, step, lc, ts)
                alerts = await _alerts(conn, incident_id) if not isinstance(step, Close) else []
                rows = plan(replace(found, lifecycle=lc), step, ts, alerts)
                if rows:
                    # The step and its messages commit together: the store's own insert runs
                    # inside this transaction (Store.enqueue would open a second one).
                    await self.store._insert_outbox(conn, rows, now=ts)
                    channels.update(r.channel for r in rows)
                actions.append(step)
            breaches = await self._breaches(conn, found, lc, policy, now)
            acked, resolved = await self._observations(conn, found, lc, ts)
            return Applied(
                incident_id=incident_id,
                actions=tuple(actions),
                breaches=breaches,
                acknowledged_after=acked,
                resolved_after=resolved,
                channels=tuple(sorted(channels)),
            )

        return await self.store.db.run(work, lock_key=group_key)

    async def _apply(
        self, conn: Connection, found: StoredIncident, step: Action, lc: Lifecycle, now: float
    ) -> None:
        due = _ts(step.due_at)
        if isinstance(step, Escalate):
            await conn.execute(
                "UPDATE incidents SET level = $2, updated_at = $3 WHERE id = $1",
                found.id,
                step.to_level,
                now,
            )
            await conn.execute(
                "INSERT INTO incident_levels (incident_id, at, from_level, to_level, reason) "
                "VALUES ($1, $2, $3, $4, 'escalated')",
                found.id,
                due,
                step.from_level,
                step.to_level,
            )
            await _event(
                conn, found.id, due, "escalated", {"from": step.from_level, "to": step.to_level}
            )
        elif isinstance(step, Repage):
            await _event(
                conn,
                found.id,
                due,
                "repaged",
                {"level": step.level, "round": step.round, "audience": list(step.audience)},
            )
        else:
            await conn.execute(
                "UPDATE incidents SET status = 'closed', closed_at = $2, updated_at = $3 "
                "WHERE id = $1",
                found.id,
                due,
                now,
            )
            await _event(conn, found.id, due, "closed", {})

    async def _breaches(
        self,
        conn: Connection,
        found: StoredIncident,
        lc: Lifecycle,
        policy: EscalationPolicy,
        now: datetime,
    ) -> tuple[tuple[int, str], ...]:
        sla = evaluate_sla(lc, policy, now)
        out = []
        for kind in sla.breaches:
            if f"breach:{kind}" in found.steps:
                continue  # recorded earlier (read in this transaction): no write every tick
            due = sla.first_response_due if kind == "first_response" else sla.response_due
            if await _claim_step(conn, found.id, f"breach:{kind}", _ts(due), _ts(now)):
                await _event(
                    conn, found.id, _ts(due), "sla_breach", {"kind": kind, "level": lc.level}
                )
                out.append((lc.level, kind))
        return tuple(out)

    async def _observations(
        self, conn: Connection, found: StoredIncident, lc: Lifecycle, now: float
    ) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
        # Measured once per incident (and per resolution), by whichever replica sees it first.
        # Steps already in ``found.steps`` were read in this transaction: no write every tick.
        acked = resolved = None
        resolve_step = f"measured:resolve:{lc.reopened}"
        if (
            lc.acknowledged_at is not None
            and "measured:ack" not in found.steps
            and await _claim_step(conn, found.id, "measured:ack", _ts(lc.acknowledged_at), now)
        ):
            acked = (lc.level, (lc.acknowledged_at - lc.opened_at).total_seconds())
        if (
            lc.resolved_at is not None
            and resolve_step not in found.steps
            and await _claim_step(conn, found.id, resolve_step, _ts(lc.resolved_at), now)
        ):
            resolved = (lc.level, (lc.resolved_at - lc.opened_at).total_seconds())
        return acked, resolved

    async def heartbeat(self, name: str, *, now: datetime) -> None:
        """Record that the ``name`` heartbeat (Alertmanager's Watchdog) arrived."""
        async with self.store.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO heartbeats (name, last_seen_at, count) VALUES ($1, $2, 1) "
                "ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
                "count = heartbeats.count + 1",
                name,
                _ts(now),
            )

    async def last_heartbeat(self, name: str) -> datetime | None:
        """When the ``name`` heartbeat last arrived."""

        async def work(conn: Connection) -> Row | None:
            return await conn.fetchrow("SELECT last_seen_at FROM heartbeats WHERE name = $1", name)

        row = await self.store.db.run(work)
        return when(row["last_seen_at"]) if row else None

    async def claim_once(self, key: str, *, now: datetime) -> bool:
        """True for exactly one caller per ``key`` across replicas (e.g. one dead man's page)."""

        async def work(conn: Connection) -> bool:
            return await _claim_step(conn, "-", key, _ts(now), _ts(now))

        return await self.store.db.run(work, lock_key=f"lifecycle:{key}")

    async def enqueue(self, rows: Sequence[NewOutboxRow], *, now: datetime) -> int:
        """Enqueue messages outside an incident step."""
        return await self.store.enqueue(rows, now=_ts(now))

    async def channel_successes(self) -> dict[str, float]:
        """Last successful delivery per channel (UNIX seconds)."""
        async with self.store.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT channel, MAX(delivered_at) AS last FROM outbox "
                "WHERE state = 'delivered' GROUP BY channel"
            )
        return {str(r["channel"]): float(r["last"]) for r in rows if r["last"] is not None}

    async def incidents_opened_between(self, start: datetime, end: datetime) -> list[str]:
        """Ids of incidents opened in [start, end)."""
        async with self.store.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT id FROM incidents WHERE opened_at >= $1 AND opened_at < $2 "
                "ORDER BY opened_at, id",
                _ts(start),
                _ts(end),
            )
        return [str(r["id"]) for r in rows]

    async def alerts_of(self, incident_id: str) -> list[dict[str, Any]]:
        """The stored alerts of an incident as template-ready dicts."""
        async with self.store.db.transaction() as conn:
            return await _alerts(conn, incident_id)


async def _alerts(conn: Connection, incident_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT fingerprint, status, starts_at, ends_at, labels, annotations FROM alerts "
        "WHERE incident_id = $1 ORDER BY first_seen_at, fingerprint",
        incident_id,
    )
    out = []
    for r in rows:
        starts = when(r["starts_at"])
        ends = when(r["ends_at"])
        out.append(
            {
                "status": r["status"],
                "labels": json.loads(r["labels"]),
                "annotations": json.loads(r["annotations"]),
                "startsAt": starts.isoformat() if starts else "",
                # Not ended stays empty: the zero time is never turned into a date.
                "endsAt": ends.isoformat() if ends else "",
                "fingerprint": r["fingerprint"],
            }
        )
    return out
