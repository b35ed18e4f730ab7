"""The store: migrations on both backends, exactly-once with two replicas on one PostgreSQL."""

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from rx_helpers import RecordingChannel, alert, harness, make_config, payload

from voicedrive_common.clock import FakeClock
from voicedrive_common.errors import ConfigError
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver.config import resolve_secrets
from voicedrive_receiver.store import open_postgres_store, open_sqlite_store, open_store
from voicedrive_receiver.store.base import NewOutboxRow, OutboxRow, SqlStore
from voicedrive_receiver.store.postgres import _Conn
from voicedrive_receiver.store.schema import MIGRATIONS

TABLES = {
    "schema_migrations",
    "notifications",
    "alerts",
    "incidents",
    "incident_levels",
    "incident_events",
    "outbox",
    "dead_letters",
}


def new_db(postgres: ThrowawayPostgres) -> str:
    return postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")


async def test_migrations_create_the_schema_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    store = await open_sqlite_store(str(tmp_path / "fresh.db"))
    try:
        assert await store.schema_version() == MIGRATIONS[-1].version
        async with store.db.transaction() as conn:
            rows = await conn.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert {r["name"] for r in rows} >= TABLES
    finally:
        await store.close()


async def test_migrations_run_once_when_reopened(tmp_path: Path) -> None:
    path = str(tmp_path / "again.db")
    await (await open_sqlite_store(path)).close()
    store = await open_sqlite_store(path)
    try:
        assert await store.migrate() == []
    finally:
        await store.close()


@pytest.mark.integration
async def test_migrations_create_the_schema_on_a_fresh_postgres_database(
    postgres: ThrowawayPostgres,
) -> None:
    store = await open_postgres_store(new_db(postgres))
    try:
        assert await store.schema_version() == MIGRATIONS[-1].version
        async with store.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        assert {r["table_name"] for r in rows} >= TABLES
    finally:
        await store.close()


@pytest.mark.integration
async def test_two_replicas_migrating_at_once_both_start(postgres: ThrowawayPostgres) -> None:
    dsn = new_db(postgres)
    stores = await asyncio.gather(open_postgres_store(dsn), open_postgres_store(dsn))
    try:
        assert [await s.schema_version() for s in stores] == [MIGRATIONS[-1].version] * 2
    finally:
        for store in stores:
            await store.close()


@pytest.mark.integration
async def test_two_replicas_on_one_postgres_receiving_the_same_payloads_page_once(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    dsn = new_db(postgres)
    config = make_config(tmp_path)
    slack = RecordingChannel("slack")
    sms = RecordingChannel("sms")
    shared = {"slack": slack, "sms": sms}
    async with (
        harness(config, await open_postgres_store(dsn), clock, channels=dict(shared)) as a,
        harness(config, await open_postgres_store(dsn), clock, channels=dict(shared)) as b,
    ):
        bodies = [
            payload(alert(level="3", fingerprint=f"fp{i}"), group_key=f"group-{i}")
            for i in range(5)
        ]
        responses = await asyncio.gather(*(rx.post(body) for body in bodies for rx in (a, b)))
        assert {r.status for r in responses} == {200}
        await asyncio.gather(a.drain(), b.drain(), a.drain(), b.drain())
        assert len(slack.sent) == 5
        assert len({m.delivery_id for m in slack.sent}) == 5
        assert len(sms.sent) == 10  # hotline + medical_ops per group
        incidents = await a.store.list_incidents()
        assert len(incidents) == 5


@pytest.mark.integration
async def test_two_replicas_claiming_at_once_never_take_the_same_row(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    dsn = new_db(postgres)
    config = make_config(tmp_path)
    async with harness(config, await open_postgres_store(dsn), clock) as a:
        for i in range(20):
            await a.post(payload(alert(level="1", fingerprint=f"f{i}"), group_key=f"g{i}"))
        other = await open_postgres_store(dsn)
        try:
            now = clock.now().timestamp()
            claims = await asyncio.gather(
                *(
                    store.claim("slack", now=now, limit=7, lease=60, owner=owner)
                    for store, owner in [(a.store, "a"), (other, "b")] * 3
                )
            )
        finally:
            await other.close()
        ids = [row.id for rows in claims for row in rows]
        assert len(ids) == 20
        assert len(set(ids)) == 20


@pytest.mark.integration
async def test_webhook_answers_503_while_postgres_refuses_and_200_after(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    name = f"rx_{uuid.uuid4().hex[:10]}"
    dsn = postgres.create_database(name)
    config = make_config(tmp_path)
    async with harness(config, await open_postgres_store(dsn), clock) as rx:
        postgres.psql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres.psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"  # noqa: S608
        )
        for _ in range(100):  # termination is asynchronous: wait until the backends are gone
            count = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"  # noqa: S608
            if postgres.psql(count).strip() == "0":
                break
            await asyncio.sleep(0.05)
        down = await rx.post(payload())
        ready = await rx.client.get("/-/ready")
        postgres.psql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        up = await rx.post(payload())
        assert (down.status, ready.status, up.status) == (503, 503, 200)
        unavailable = rx.services.metrics.webhooks.labels(outcome="unavailable")
        assert unavailable._value.get() == 1


@pytest.mark.integration
async def test_a_delivery_on_postgres_is_recorded_once_with_its_timeline_event(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    async with harness(config, await open_postgres_store(new_db(postgres)), clock) as rx:
        incident_id = (await rx.ingest(payload(alert(level="1")))).incident_id
        now = clock.now().timestamp()
        (row,) = await rx.store.claim("slack", now=now, limit=5, lease=60, owner="a")
        assert not await rx.store.mark_delivered(row, owner="b", now=now, upstream_id=None)
        assert await rx.store.mark_delivered(row, owner="a", now=now, upstream_id="u1")
        assert not await rx.store.mark_delivered(row, owner="a", now=now, upstream_id="u1")
        found = await rx.store.get_incident(incident_id)
    assert found is not None
    delivered = [e for e in found.events if e["kind"] == "delivered"]
    assert [e["detail"]["channel"] for e in delivered] == ["slack"]
    assert [d["state"] for d in found.deliveries] == ["delivered"]


async def test_sqlite_path_in_a_missing_directory_is_a_config_error_naming_the_key(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, store=f"sqlite: {{path: {tmp_path / 'typo' / 'x.db'}}}")
    with pytest.raises(ConfigError, match=r"^store\.sqlite\.path: directory .* does not exist"):
        await open_store(config.store, resolve_secrets(config))
    assert not (tmp_path / "typo").exists()


STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
]


async def _open(kind: str, tmp_path: Path, postgres: ThrowawayPostgres) -> SqlStore:
    if kind == "sqlite":
        return await open_sqlite_store(str(tmp_path / "alerts.db"))
    return await open_postgres_store(new_db(postgres))


@pytest.mark.parametrize("kind", STORES)
async def test_a_group_of_many_alerts_is_stored_whole_under_its_incident(
    kind: str, postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    alerts = [alert(level="2", fingerprint=f"fp{i:02d}", n=str(i)) for i in range(40)]
    async with harness(config, await _open(kind, tmp_path, postgres), clock) as rx:
        incident_id = (await rx.ingest(payload(*alerts))).incident_id
        stored = await rx.store.db.statement(
            "SELECT fingerprint, labels, incident_id FROM alerts ORDER BY fingerprint"
        )
        notes = await rx.store.db.statement("SELECT incident_id FROM notifications")
    assert incident_id is not None
    assert [r["fingerprint"] for r in stored] == [f"fp{i:02d}" for i in range(40)]
    assert {r["incident_id"] for r in stored} == {incident_id}
    assert json.loads(stored[7]["labels"])["n"] == "7"
    assert notes == [{"incident_id": incident_id}]


@pytest.mark.parametrize("kind", STORES)
async def test_an_alert_repeated_in_one_payload_is_stored_once_as_its_last_copy(
    kind: str, postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    # Alertmanager never sends this, but a proxy in front of it might: not a failed row.
    config = make_config(tmp_path)
    first = alert(level="2", fingerprint="same", copy="first")
    last = alert(level="2", fingerprint="same", copy="last")
    async with harness(config, await _open(kind, tmp_path, postgres), clock) as rx:
        processed = await rx.ingest(payload(first, alert(level="2", fingerprint="other"), last))
        stored = await rx.store.db.statement(
            "SELECT fingerprint, labels FROM alerts ORDER BY fingerprint"
        )
    assert processed.outcome == "stored"
    assert [r["fingerprint"] for r in stored] == ["other", "same"]
    assert json.loads(stored[1]["labels"])["copy"] == "last"


@pytest.mark.integration
async def test_a_notification_to_an_open_incident_is_three_statements_on_postgres(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each statement is a round trip of the event loop, which also answers the webhooks: the
    # journal row with the group's lock, the reads, and the writes (alerts, incident, outbox).
    config = make_config(tmp_path)
    async with harness(config, await open_postgres_store(new_db(postgres)), clock) as rx:
        opened = await rx.ingest(payload(alert(level="2", fingerprint="a")))
        statements: list[str] = []
        for name in ("execute", "fetch", "fetchrow"):
            original = getattr(_Conn, name)

            async def counted(self: _Conn, sql: str, *args: Any, _original: Any = original) -> Any:
                statements.append(sql)
                return await _original(self, sql, *args)

            monkeypatch.setattr(_Conn, name, counted)
        clock.advance(60)
        joined = await rx.ingest(
            payload(alert(level="2", fingerprint="a"), alert(level="1", fingerprint="b"))
        )
        monkeypatch.undo()
        incident = await rx.store.get_incident(str(joined.incident_id))
        queued = await rx.store.db.statement(
            "SELECT channel FROM outbox WHERE status = 'firing' ORDER BY id"
        )
    assert len(statements) == 3, statements
    assert joined.outcome == "stored"
    assert joined.incident_id == opened.incident_id
    assert incident is not None
    assert incident.updated_at > incident.opened_at
    assert sorted(r["channel"] for r in queued) == ["email", "email", "slack", "slack"]


@pytest.mark.parametrize("kind", STORES)
async def test_a_held_row_enqueued_twice_at_once_is_one_row_with_one_held_event(
    kind: str, postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(make_config(tmp_path), await _open(kind, tmp_path, postgres), clock) as rx:
        incident_id = (await rx.ingest(payload(alert(level="2")))).incident_id
        now = clock.now().timestamp()
        held = NewOutboxRow(
            delivery_id="held-once",
            pair_key="pair",
            purpose="held",
            incident_id=incident_id,
            group_key="group",
            channel="held:email",
            contact="tech_lead",
            status="firing",
            level=2,
            rendered={},
            not_before=now + 3600,
        )
        enqueued = await rx.store.enqueue([held, held], now=now)
        events = await rx.store.db.statement(
            "SELECT COUNT(*) AS n FROM incident_events WHERE kind = 'held'"
        )
    assert enqueued == 1
    assert events == [{"n": 1}]


def _slack_row(n: int, *, level: int, pair: str, now: float) -> NewOutboxRow:
    return NewOutboxRow(
        delivery_id=f"d{n}",
        pair_key=pair,
        purpose="notification",
        incident_id=None,
        group_key=f"group-{pair}",
        channel="slack",
        contact="emergency_channel",
        status="firing",
        level=level,
        rendered={},
        not_before=now,
    )


async def _claimed(store: SqlStore, rows: list[NewOutboxRow], *, limit: int) -> list[OutboxRow]:
    """Enqueue ``rows`` (all due at once) and claim up to ``limit`` of them; closes ``store``."""
    try:
        await store.enqueue(rows, now=100.0)
        return await store.claim("slack", now=100.0, limit=limit, lease=60, owner="a")
    finally:
        await store.close()


@pytest.mark.parametrize("kind", STORES)
async def test_a_claim_takes_the_highest_level_first_then_the_oldest(
    kind: str, postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    rows = [_slack_row(n, level=1, pair=f"p{n}", now=100.0) for n in range(5)]
    rows.append(_slack_row(9, level=4, pair="p9", now=100.0))
    claimed = await _claimed(await _open(kind, tmp_path, postgres), rows, limit=2)
    assert [(r.level, r.delivery_id) for r in claimed] == [(4, "d9"), (1, "d0")]


@pytest.mark.parametrize("kind", STORES)
async def test_a_higher_level_never_overtakes_an_earlier_message_of_its_recipient(
    kind: str, postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    earlier = _slack_row(1, level=1, pair="same", now=100.0)
    raised = _slack_row(2, level=4, pair="same", now=100.0)
    claimed = await _claimed(await _open(kind, tmp_path, postgres), [earlier, raised], limit=5)
    assert [r.delivery_id for r in claimed] == ["d1"]
