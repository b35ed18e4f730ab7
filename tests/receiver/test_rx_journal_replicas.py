"""Replicas on one PostgreSQL keep a group's order: a pass takes the peers' earlier rows along.

A load balancer spreads one group's notifications over the replicas; a replica with a backlog
may still hold the group's firing notification while another one has its resolved one. Each
pass processes the group's earlier rows first, whoever accepted them (once: the owner finds
them gone).
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rx_helpers import Harness, alert, harness, make_config, payload

from voicedrive_common.clock import FakeClock
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver.store import open_postgres_store
from voicedrive_receiver.store.base import Connection
from voicedrive_receiver.store.schema import GROUP_PREFIX

ENDED = "2025-09-01T09:05:00+09:00"
FIRING = payload(alert(level="2"))
RESOLVED = payload(alert(level="2", status="resolved", ends_at=ENDED))
# Group keys that differ only past the characters webhook_journal_group indexes.
PREFIX = "{}:{" + "x" * GROUP_PREFIX


@pytest.fixture
async def replicas(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two receivers, "a" and "b", on one PostgreSQL database and one clock."""
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    config = make_config(tmp_path)
    async with (
        harness(config, await open_postgres_store(dsn), clock, instance="a") as a,
        harness(config, await open_postgres_store(dsn), clock, instance="b") as b,
    ):
        yield a, b


async def receipt(rx: Harness, body: dict[str, Any]) -> int:
    """Journal ``body`` at ``rx`` without processing it; its receipt."""
    resp = await rx.post(body, process=False)
    assert resp.status == 200, await resp.text()
    return int(json.loads(await resp.text())["receipt"])


async def enqueued(rx: Harness) -> list[str]:
    """The status of every outbox row, in the order they were enqueued."""
    rows = await rx.store.db.statement("SELECT status FROM outbox ORDER BY id")
    return [r["status"] for r in rows]


async def waiting(rx: Harness) -> list[int]:
    """Ids of the journal rows not processed yet."""
    rows = await rx.store.db.statement("SELECT id FROM webhook_journal ORDER BY id")
    return [int(r["id"]) for r in rows]


def resolved_all(*fingerprints: str) -> dict[str, Any]:
    alerts = (
        alert(level="2", status="resolved", ends_at=ENDED, fingerprint=f) for f in fingerprints
    )
    return payload(*alerts)


@pytest.mark.integration
async def test_a_live_peers_earlier_firing_is_applied_before_this_instances_resolved(
    replicas: tuple[Harness, Harness],
) -> None:
    a, b = replicas
    firing = await receipt(b, FIRING)  # b has a backlog: its row waits
    resolved = await receipt(a, RESOLVED)
    done = await a.processor.process_pending()
    assert [(p.entry_id, p.outcome) for p in done] == [(firing, "stored"), (resolved, "stored")]
    [incident] = await a.store.list_incidents()
    assert incident.status == "resolved"
    assert await enqueued(a) == ["firing", "firing", "resolved", "resolved"]


@pytest.mark.integration
async def test_the_peer_finds_its_row_processed_elsewhere_and_pages_nobody_again(
    replicas: tuple[Harness, Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    firing = await receipt(b, FIRING)
    await receipt(a, RESOLVED)
    journal = b.store.journal
    pending = journal.pending

    async def read_then_a_processes(**kwargs: Any) -> Any:
        rows = await pending(**kwargs)
        await a.processor.process_pending()  # b's pass has read the row a now processes
        return rows

    monkeypatch.setattr(journal, "pending", read_then_a_processes)
    late = await b.processor.process_pending()
    assert [(p.entry_id, p.outcome) for p in late] == [(firing, "elsewhere")]
    assert b.services.metrics.duplicates._value.get() == 0
    assert b.services.metrics.processed.labels(outcome="failed")._value.get() == 0
    await a.drain()
    assert a.channels["email"].contacts() == [("tech_lead", "firing"), ("tech_lead", "resolved")]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("other_key", "own_key"),
    [
        pytest.param("{}:{other}", "{}:{own}", id="another-key"),
        pytest.param(PREFIX + "b}", PREFIX + "a}", id="same-indexed-prefix"),
    ],
)
async def test_a_peers_earlier_row_of_another_group_is_left_to_the_peer(
    replicas: tuple[Harness, Harness], other_key: str, own_key: str
) -> None:
    a, b = replicas
    other = await receipt(b, payload(alert(level="2"), group_key=other_key))
    own = await receipt(a, payload(alert(level="2"), group_key=own_key))
    done = await a.processor.process_pending()
    assert [p.entry_id for p in done] == [own]
    assert await waiting(a) == [other]


@pytest.mark.integration
async def test_rows_of_other_groups_under_its_keys_prefix_never_hold_a_group_back(
    replicas: tuple[Harness, Harness],
) -> None:
    a, b = replicas
    others = [
        await receipt(b, payload(alert(level="2", fingerprint=f"o{n}"), group_key=PREFIX + "b}"))
        for n in range(3)
    ]
    own = await receipt(a, payload(alert(level="2"), group_key=PREFIX + "a}"))
    done = await a.processor.process_pending(limit=1)  # a share of one row per group
    assert [p.entry_id for p in done] == [own]
    assert await waiting(a) == others


@pytest.mark.integration
async def test_an_urgent_row_under_a_prefix_shared_with_a_backlog_is_processed_first(
    replicas: tuple[Harness, Harness],
) -> None:
    a, _ = replicas
    for n in range(64):  # a whole pass's share of rows of other groups under the prefix
        await receipt(a, payload(alert(level="2", fingerprint=f"b{n}"), group_key=f"{PREFIX}{n}}}"))
    page = await receipt(a, payload(alert(level="4"), group_key=PREFIX + "urgent}"))
    done = await a.processor.process_pending()
    assert [p.entry_id for p in done] == [page]


@pytest.mark.integration
async def test_a_peers_earlier_row_that_failed_processing_holds_nothing(
    replicas: tuple[Harness, Harness], clock: FakeClock
) -> None:
    a, b = replicas
    failed = await receipt(b, FIRING)
    await b.store.journal.fail(failed, now=clock.now().timestamp(), error="RuntimeError: bug")
    own = await receipt(a, RESOLVED)
    done = await a.processor.process_pending()
    assert [(p.entry_id, p.outcome) for p in done] == [(own, "stored")]
    assert await waiting(a) == [failed]  # kept, with its error, for an operator


@pytest.mark.integration
async def test_a_peers_row_between_two_of_this_instances_rows_is_applied_between_them(
    replicas: tuple[Harness, Harness],
) -> None:
    a, b = replicas
    first = await receipt(a, payload(alert(level="2", fingerprint="fp1")))
    second = await receipt(
        b, payload(alert(level="2", fingerprint="fp1"), alert(fingerprint="fp2"))
    )
    last = await receipt(a, resolved_all("fp1", "fp2"))
    done = await a.processor.process_pending()
    assert [p.entry_id for p in done] == [first, second, last]
    [incident] = await a.store.list_incidents()
    assert incident.status == "resolved"


@pytest.mark.integration
async def test_a_row_its_owner_is_processing_is_waited_for_then_found_gone(
    replicas: tuple[Harness, Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    firing = await receipt(b, FIRING)
    resolved = await receipt(a, RESOLVED)
    taken, go = asyncio.Event(), asyncio.Event()
    take = b.store.journal.take

    async def take_and_hold(conn: Connection, entry_id: int, *, lock_key: str) -> bool:
        found = await take(conn, entry_id, lock_key=lock_key)
        taken.set()  # b's transaction holds the group's lock and has deleted the row
        await asyncio.wait_for(go.wait(), 5)
        return found

    monkeypatch.setattr(b.store.journal, "take", take_and_hold)
    theirs = asyncio.create_task(b.processor.process_pending())
    await asyncio.wait_for(taken.wait(), 5)
    ours = asyncio.create_task(a.processor.process_pending())
    # a's take of b's row waits for the group's advisory lock, taken before the row is read
    # (waiting on the deleted row itself would show as a transactionid lock instead).
    async with asyncio.timeout(5):
        while not await advisory_lock_waiters(a):  # noqa: ASYNC110 - pg_locks has no event
            await asyncio.sleep(0.01)
    assert not ours.done()
    go.set()
    async with asyncio.timeout(5):
        mine, peers = await asyncio.gather(ours, theirs)
    assert [(p.entry_id, p.outcome) for p in peers] == [(firing, "stored")]
    assert [(p.entry_id, p.outcome) for p in mine] == [(firing, "elsewhere"), (resolved, "stored")]
    [incident] = await a.store.list_incidents()
    assert incident.status == "resolved"
    assert await enqueued(a) == ["firing", "firing", "resolved", "resolved"]


async def advisory_lock_waiters(rx: Harness) -> int:
    rows = await rx.store.db.statement(
        "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    )
    return int(rows[0]["n"])


@pytest.mark.integration
async def test_two_replicas_processing_one_group_at_once_apply_each_row_once_in_order(
    replicas: tuple[Harness, Harness],
) -> None:
    a, b = replicas
    # Each firing brings a new alert, each resolved ends all of them: any other order than
    # the journal's leaves the incident open or pages a different sequence.
    receipts = []
    for n in range(4):
        fingerprints = [f"fp{m}" for m in range(n + 1)]
        firing = payload(*(alert(level="2", fingerprint=f) for f in fingerprints))
        receipts.append(await receipt(b if n % 2 else a, firing))
        receipts.append(await receipt(a if n % 2 else b, resolved_all(*fingerprints)))
    results: list[tuple[int, str]] = []
    for _ in range(3):  # the first round takes every row along; the others find none left
        ours, theirs = await asyncio.gather(
            a.processor.process_pending(), b.processor.process_pending()
        )
        results += [(p.entry_id, p.outcome) for p in ours + theirs]
    stored = sorted(entry for entry, outcome in results if outcome == "stored")
    assert stored == receipts
    assert {outcome for _, outcome in results} <= {"stored", "elsewhere"}
    assert await enqueued(a) == ["firing", "firing", "resolved", "resolved"] * 4
    [incident] = await a.store.list_incidents()
    assert incident.status == "resolved"


async def three_peer_firings_then_own_resolved(a: Harness, b: Harness) -> tuple[list[int], int]:
    """b journals three alerts' firing notifications, then a the group's resolved one."""
    fingerprints = ("fp0", "fp1", "fp2")
    earlier = [await receipt(b, payload(alert(level="2", fingerprint=f))) for f in fingerprints]
    return earlier, await receipt(a, resolved_all(*fingerprints))


@pytest.mark.integration
async def test_a_groups_own_row_waits_while_the_limit_leaves_earlier_peer_rows_unread(
    replicas: tuple[Harness, Harness],
) -> None:
    a, b = replicas
    earlier, own = await three_peer_firings_then_own_resolved(a, b)
    done = await a.processor.process_pending(limit=2)  # room for two of b's rows
    assert [p.entry_id for p in done] == earlier[:2]
    assert await waiting(a) == [earlier[2], own]
    [incident] = await a.store.list_incidents()
    assert incident.status == "open"


@pytest.mark.integration
async def test_rows_the_limit_left_are_processed_by_the_next_pass_in_order(
    replicas: tuple[Harness, Harness],
) -> None:
    a, b = replicas
    earlier, own = await three_peer_firings_then_own_resolved(a, b)
    await a.processor.process_pending(limit=2)
    done = await a.processor.process_pending(limit=2)
    assert [p.entry_id for p in done] == [earlier[2], own]
    [incident] = await a.store.list_incidents()
    assert incident.status == "resolved"


@pytest.mark.integration
async def test_on_postgres_a_pass_reads_its_groups_earlier_peer_rows_in_one_statement(
    replicas: tuple[Harness, Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    for n in range(3):
        await receipt(b, payload(alert(level="2"), group_key=f"{{}}:{{g{n}}}"))
    for n in range(3):
        await receipt(a, payload(alert(level="2", fingerprint="x"), group_key=f"{{}}:{{g{n}}}"))
    statements = count_statements(a, monkeypatch)
    done = await a.processor.process_pending()
    assert len(done) == 6
    # The urgent rows (none), the pass's rows, then every group's earlier ones at once.
    assert len(statements) == 3


async def test_on_sqlite_a_pass_issues_no_query_for_earlier_rows(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One receiver per SQLite file: every row is in the pass already.
    for n in range(3):
        await receipt(rx, payload(alert(level="2"), group_key=f"{{}}:{{g{n}}}"))
        await receipt(rx, payload(alert(level="2", fingerprint="x"), group_key=f"{{}}:{{g{n}}}"))
    statements = count_statements(rx, monkeypatch)
    done = await rx.processor.process_pending()
    assert len(done) == 6
    assert len(statements) == 2  # the urgent rows (none), then the pass's rows


def count_statements(rx: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL of every ``Database.statement`` call from now on."""
    calls: list[str] = []
    db = rx.store.db
    statement = db.statement

    async def counted(sql: str, *args: Any) -> Any:
        calls.append(sql)
        return await statement(sql, *args)

    monkeypatch.setattr(db, "statement", counted)
    return calls
