"""Versioned schema migrations, one list for both dialects.

Each migration is applied once, in order, inside a transaction, and recorded in
``schema_migrations``. ``{id}``, ``{float}`` and ``{json}`` are the only dialect differences.
Times are UNIX seconds (double precision): the clock is injected, and the same arithmetic works
on SQLite and PostgreSQL. Never edit a released migration; append a new one.
"""

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgres"]


# Notifications of this level and above page people by SMS or phone (P6): processed ahead of
# a backlog of lower levels (journal.py, processing.py).
URGENT_LEVEL = 3


def is_urgent(level: int | None) -> bool:
    """Whether a notification of ``level`` (None: nothing firing) goes ahead of a backlog."""
    return level is not None and level >= URGENT_LEVEL


# Characters of a group key in the journal's group index (webhook_journal_group).
GROUP_PREFIX = 200


def advisory_lock(key: str) -> str:
    """PostgreSQL: the call taking the transaction's lock on the text ``key`` (a parameter)."""
    return f"pg_advisory_xact_lock(hashtextextended({key}, 0))"


_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL", "json": "TEXT"},
    "postgres": {"id": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION", "json": "TEXT"},
}


@dataclass(frozen=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    statements: tuple[str, ...]

    def sql(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements for ``dialect``."""
        return tuple(s.format(**_TYPES[dialect]) for s in self.statements)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "receiver base: notifications, alerts, incidents, outbox, dead letters",
        (
            # One row per distinct notification identity; replays only bump the counter.
            """CREATE TABLE notifications (
                id {id},
                identity TEXT NOT NULL UNIQUE,
                group_key TEXT NOT NULL,
                status TEXT NOT NULL,
                level INTEGER NOT NULL,
                incident_id TEXT,
                received_at {float} NOT NULL,
                last_received_at {float} NOT NULL,
                duplicates INTEGER NOT NULL DEFAULT 0,
                external_url TEXT NOT NULL,
                receiver TEXT NOT NULL,
                payload {json} NOT NULL
            )""",
            "CREATE INDEX notifications_group ON notifications (group_key, received_at)",
            """CREATE TABLE alerts (
                group_key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                starts_at {float} NOT NULL,
                status TEXT NOT NULL,
                ends_at {float},
                level INTEGER NOT NULL,
                level_source TEXT NOT NULL,
                labels {json} NOT NULL,
                annotations {json} NOT NULL,
                incident_id TEXT,
                first_seen_at {float} NOT NULL,
                last_seen_at {float} NOT NULL,
                PRIMARY KEY (group_key, fingerprint, starts_at)
            )""",
            """CREATE TABLE incidents (
                id TEXT PRIMARY KEY,
                group_key TEXT NOT NULL,
                level INTEGER NOT NULL,
                system TEXT NOT NULL,
                component TEXT NOT NULL,
                summary TEXT NOT NULL,
                status TEXT NOT NULL,
                opened_at {float} NOT NULL,
                acknowledged_at {float},
                acknowledged_by TEXT,
                resolved_at {float},
                closed_at {float},
                updated_at {float} NOT NULL,
                record {json} NOT NULL DEFAULT '{{}}'
            )""",
            # At most one incident per group is not closed: two replicas cannot open two.
            """CREATE UNIQUE INDEX incidents_one_active_per_group
                ON incidents (group_key) WHERE closed_at IS NULL""",
            "CREATE INDEX incidents_opened ON incidents (opened_at)",
            """CREATE TABLE incident_levels (
                id {id},
                incident_id TEXT NOT NULL REFERENCES incidents (id),
                at {float} NOT NULL,
                from_level INTEGER,
                to_level INTEGER NOT NULL,
                reason TEXT NOT NULL
            )""",
            "CREATE INDEX incident_levels_incident ON incident_levels (incident_id, at)",
            """CREATE TABLE incident_events (
                id {id},
                incident_id TEXT NOT NULL REFERENCES incidents (id),
                at {float} NOT NULL,
                kind TEXT NOT NULL,
                detail {json} NOT NULL DEFAULT '{{}}'
            )""",
            "CREATE INDEX incident_events_incident ON incident_events (incident_id, at)",
            """CREATE TABLE outbox (
                id {id},
                delivery_id TEXT NOT NULL UNIQUE,
                pair_key TEXT NOT NULL,
                purpose TEXT NOT NULL,
                incident_id TEXT,
                group_key TEXT NOT NULL,
                channel TEXT NOT NULL,
                contact TEXT NOT NULL,
                status TEXT NOT NULL,
                level INTEGER NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at {float} NOT NULL,
                next_attempt_at {float} NOT NULL,
                lease_owner TEXT,
                lease_until {float},
                delivered_at {float},
                upstream_id TEXT,
                last_error TEXT,
                rendered {json} NOT NULL
            )""",
            "CREATE INDEX outbox_due ON outbox (channel, state, next_attempt_at)",
            "CREATE INDEX outbox_pair ON outbox (pair_key, state, id)",
            "CREATE INDEX outbox_incident ON outbox (incident_id, status)",
            """CREATE TABLE dead_letters (
                outbox_id BIGINT PRIMARY KEY,
                delivery_id TEXT NOT NULL,
                channel TEXT NOT NULL,
                contact TEXT NOT NULL,
                incident_id TEXT,
                failed_at {float} NOT NULL,
                attempts INTEGER NOT NULL,
                last_error TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "incident lifecycle (issue 5): applied steps and heartbeats",
        (
            # One row per (incident, step) applied: escalations, re-pages, closing, SLA breaches,
            # measurements. The primary key is what makes a step happen once across replicas.
            """CREATE TABLE lifecycle_steps (
                incident_id TEXT NOT NULL,
                step TEXT NOT NULL,
                due_at {float} NOT NULL,
                done_at {float} NOT NULL,
                PRIMARY KEY (incident_id, step)
            )""",
            # Last arrival of each heartbeat (Alertmanager's Watchdog, the dead man's switch).
            """CREATE TABLE heartbeats (
                name TEXT PRIMARY KEY,
                last_seen_at {float} NOT NULL,
                count INTEGER NOT NULL DEFAULT 0
            )""",
        ),
    ),
    Migration(
        3,
        "indexes for the scheduler tick: restart events, held rows",
        (
            # A tick rebuilds each active incident from its reopened/repaged events only; a
            # busy incident has thousands of delivery events that must not be scanned. Partial,
            # so the delivery events written on every send do not maintain it.
            """CREATE INDEX incident_events_restarts ON incident_events (incident_id, at)
                WHERE kind IN ('reopened', 'repaged')""",
            # The digest release looks for due held rows on every tick: never scan the outbox.
            """CREATE INDEX outbox_held ON outbox (next_attempt_at)
                WHERE purpose = 'held' AND state = 'pending'""",
        ),
    ),
    Migration(
        4,
        "webhook journal: notifications acknowledged, not yet processed",
        (
            # The webhook's 2xx rests on this row alone; processing (incident, outbox) deletes
            # it in its own transaction, so a notification is processed exactly once. Rows
            # that failed processing stay, with the error, for an operator to look at.
            """CREATE TABLE webhook_journal (
                id {id},
                group_key TEXT NOT NULL,
                received_at {float} NOT NULL,
                owner TEXT NOT NULL,
                payload {json} NOT NULL,
                failed_at {float},
                error TEXT
            )""",
            # The gauges count and age the backlog every second: from this index, without
            # reading the payloads.
            "CREATE INDEX webhook_journal_state ON webhook_journal (failed_at, received_at)",
        ),
    ),
    Migration(
        5,
        "in-doubt reconciliation: attempt start and the start of the first unsettled attempt",
        (
            # When the current (or last) attempt was claimed: a lookup for an earlier send
            # starts there.
            "ALTER TABLE outbox ADD COLUMN attempt_started_at {float}",
            # Set when an attempt ended without an outcome (the lease ran out unmarked, or the
            # send timed out locally): the upstream may hold the message already. It stays set
            # until the row is settled, so every later attempt looks back to the first doubt.
            "ALTER TABLE outbox ADD COLUMN in_doubt_since {float}",
        ),
    ),
    Migration(
        6,
        "outbox: the claim finds each recipient's oldest pending row from one index",
        (
            # The claim groups a channel's pending rows by pair_key and takes the lowest id:
            # read in index order, without sorting, however deep the backlog. It replaces the
            # index of the old per-row NOT EXISTS, so an insert maintains no more indexes.
            "CREATE INDEX outbox_heads ON outbox (channel, state, pair_key, id)",
            "DROP INDEX outbox_pair",
        ),
    ),
    Migration(
        7,
        "journal: urgent notifications (Level 3 and 4) are processed ahead of a backlog",
        (
            # The level of the firing alerts as judged at receipt (NULL: none firing, or a row
            # from before this migration). Processing decides the level again.
            "ALTER TABLE webhook_journal ADD COLUMN level INTEGER",
            # Only urgent rows: the urgent pass finds them without reading the backlog. The
            # predicate must stay the one in journal.py's query (URGENT_LEVEL) for it to apply.
            "CREATE INDEX webhook_journal_urgent ON webhook_journal (id) "
            f"WHERE level >= {URGENT_LEVEL} AND failed_at IS NULL",
            # An urgent group's earlier rows, in order, without scanning the backlog. A prefix:
            # a whole group key may be longer than a PostgreSQL index row, and an insert
            # refused for it would answer 503 to that notification forever.
            "CREATE INDEX webhook_journal_group ON webhook_journal "
            f"(substr(group_key, 1, {GROUP_PREFIX}), id) WHERE failed_at IS NULL",
        ),
    ),
)
