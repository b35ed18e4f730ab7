"""SQLite group commit: units queued together share one commit, and a failing one fails alone."""

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.store import open_sqlite_store
from voicedrive_receiver.store.base import SqlStore


async def _store_with_table(tmp_path: Path) -> SqlStore:
    store = await open_sqlite_store(str(tmp_path / "group.db"))
    async with store.db.transaction() as conn:
        await conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
    return store


async def _keys(store: SqlStore) -> list[str]:
    rows = await store.db.statement("SELECT k FROM t ORDER BY k")
    return [r["k"] for r in rows]


async def test_a_failing_statement_fails_alone_and_the_rest_of_its_commit_is_stored(
    tmp_path: Path,
) -> None:
    store = await _store_with_table(tmp_path)
    try:
        insert = "INSERT INTO t (k, v) VALUES ($1, $2) RETURNING k"
        results = await asyncio.gather(
            store.db.statement(insert, "a", "1"),
            store.db.statement(insert, "a", "again"),  # primary key taken
            store.db.statement(insert, "b", "2"),
            return_exceptions=True,
        )
        assert results[0] == [{"k": "a"}]
        assert isinstance(results[1], sqlite3.IntegrityError)
        assert results[2] == [{"k": "b"}]
        assert await _keys(store) == ["a", "b"]
    finally:
        await store.close()


async def test_a_failing_unit_of_several_statements_is_undone_whole_beside_statements(
    tmp_path: Path,
) -> None:
    store = await _store_with_table(tmp_path)
    try:

        async def unit(conn: Any) -> None:
            await conn.execute("INSERT INTO t (k, v) VALUES ($1, $2)", "u1", "x")
            await conn.execute("INSERT INTO t (k, v) VALUES ($1, $2)", "u2", None)  # NOT NULL

        insert = "INSERT INTO t (k, v) VALUES ($1, $2)"
        results = await asyncio.gather(
            store.db.statement(insert, "before", "1"),
            store.db.run(unit),
            store.db.statement(insert, "after", "2"),
            return_exceptions=True,
        )
        assert results[0] == []
        assert results[2] == []
        assert isinstance(results[1], sqlite3.IntegrityError)
        assert await _keys(store) == ["after", "before"]
    finally:
        await store.close()


async def test_an_operational_error_in_a_statement_is_store_unavailable(tmp_path: Path) -> None:
    store = await _store_with_table(tmp_path)
    try:
        with pytest.raises(StoreUnavailable):
            await store.db.statement("INSERT INTO missing_table (k) VALUES ($1)", "x")
        assert await _keys(store) == []
    finally:
        await store.close()


async def test_a_statement_failing_after_its_changes_fails_its_whole_batch(
    tmp_path: Path,
) -> None:
    # SQLite makes every change of an INSERT ... RETURNING in its first step; here the error
    # comes after that, in Python, while the returned row is decoded. With no savepoint to undo
    # it, the batch is rolled back and every unit of it is told to retry (a 503 for webhooks).
    store = await _store_with_table(tmp_path)
    try:
        bad = "INSERT INTO t (k, v) VALUES ($1, $2) RETURNING CAST(X'FF' AS TEXT) AS r"
        good = "INSERT INTO t (k, v) VALUES ($1, $2) RETURNING k"
        results = await asyncio.gather(
            store.db.statement(bad, "failed", "1"),
            store.db.statement(good, "ok", "2"),
            return_exceptions=True,
        )
        assert isinstance(results[0], StoreUnavailable)
        assert isinstance(results[1], StoreUnavailable)
        assert await store.db.statement("SELECT k FROM t") == []
        assert await store.db.statement(good, "retried", "3") == [{"k": "retried"}]
    finally:
        await store.close()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection (another process, say) holding the file's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_batch_waits_for_another_connections_write_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    store = await open_sqlite_store(str(tmp_path / "group.db"), busy_timeout=30.0)
    try:
        async with store.db.transaction() as conn:
            await conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        other = _hold_write_lock(tmp_path / "group.db")
        insert = asyncio.create_task(
            store.db.statement("INSERT INTO t (k, v) VALUES ($1, $2) RETURNING k", "a", "1")
        )
        ticks = 0
        for _ in range(5):  # the loop keeps turning while the batch waits for the lock
            await asyncio.sleep(0.02)
            ticks += 1
        assert ticks == 5
        assert not insert.done()
        other.execute("COMMIT")
        other.close()
        assert await asyncio.wait_for(insert, timeout=20) == [{"k": "a"}]
        assert await _keys(store) == ["a"]
    finally:
        await store.close()


async def test_the_busy_timeout_still_applies_after_a_batch_began_at_once(tmp_path: Path) -> None:
    # The fast path begins with the busy timeout off, and must put it back for everything else.
    store = await open_sqlite_store(str(tmp_path / "group.db"), busy_timeout=30.0)
    try:
        async with store.db.transaction() as conn:
            await conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        await store.db.statement("INSERT INTO t (k, v) VALUES ($1, $2)", "a", "1")
        assert await store.db.statement("PRAGMA busy_timeout") == [{"timeout": 30_000}]
    finally:
        await store.close()
