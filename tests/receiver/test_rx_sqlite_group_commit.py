"""SQLite group commit: units queued together share one commit, and a failing one fails alone."""

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.store import open_sqlite_store
from voicedrive_receiver.store.base import SqlStore
from voicedrive_receiver.store.sqlite import SqliteDatabase


async def _store_with_table(tmp_path: Path, *, busy_timeout: float = 5.0) -> SqlStore:
    store = await open_sqlite_store(str(tmp_path / "group.db"), busy_timeout=busy_timeout)
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
    store = await _store_with_table(tmp_path, busy_timeout=30.0)
    try:
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
    store = await _store_with_table(tmp_path, busy_timeout=30.0)
    try:
        await store.db.statement("INSERT INTO t (k, v) VALUES ($1, $2)", "a", "1")
        assert await store.db.statement("PRAGMA busy_timeout") == [{"timeout": 30_000}]
    finally:
        await store.close()


async def test_a_commit_failing_after_its_batch_was_cancelled_leaves_the_store_usable(
    tmp_path: Path,
) -> None:
    # Cancelled (a shutdown), the batch no longer awaits its COMMIT, which still runs on the
    # database thread; when it fails there (a deferred foreign key here, a full disk alike),
    # it must be rolled back there too, or every later BEGIN fails.
    store = await open_sqlite_store(str(tmp_path / "group.db"))
    db = store.db
    assert isinstance(db, SqliteDatabase)
    gate = threading.Event()
    try:
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
            await conn.execute(
                "CREATE TABLE c (pid INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        busy = asyncio.wrap_future(db._executor.submit(gate.wait, 10))  # COMMIT waits behind
        doomed = asyncio.ensure_future(db.statement("INSERT INTO c (pid) VALUES ($1)", 99))
        for _ in range(500):
            if db._committer is not None and db._conn is not None and db._conn.in_transaction:
                break
            await asyncio.sleep(0.01)
        assert db._committer is not None
        db._committer.cancel()
        gate.set()
        await busy
        assert isinstance((await asyncio.gather(doomed, return_exceptions=True))[0], Exception)
        inserted = await db.statement("INSERT INTO p (id) VALUES ($1) RETURNING id", 1)
        assert inserted == [{"id": 1}]
    finally:
        gate.set()
        await store.close()


async def test_a_transaction_cancelled_in_its_begin_neither_blocks_the_loop_nor_the_next_batch(
    tmp_path: Path,
) -> None:
    # The cancelled BEGIN goes on waiting for the lock on the database thread. The next batch
    # must wait for that job instead of using the connection beside it (which would hold the
    # loop until the busy timeout), and roll back the transaction it leaves open.
    store = await _store_with_table(tmp_path, busy_timeout=3.0)
    try:
        other = _hold_write_lock(tmp_path / "group.db")

        async def job() -> None:
            async with store.db.transaction() as conn:
                await conn.execute("INSERT INTO t (k, v) VALUES ($1, $2)", "job", "1")

        cancelled = asyncio.create_task(job())
        await asyncio.sleep(0.1)  # its BEGIN now waits for the lock on the database thread
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        insert = asyncio.ensure_future(
            store.db.statement("INSERT INTO t (k, v) VALUES ($1, $2) RETURNING k", "next", "2")
        )
        started = time.monotonic()
        for _ in range(5):
            await asyncio.sleep(0.01)
        turning = time.monotonic() - started
        other.execute("COMMIT")
        other.close()
        assert turning < 1.5  # blocked, the loop would stand still for the 3 s busy timeout
        assert await asyncio.wait_for(insert, timeout=20) == [{"k": "next"}]
        assert await _keys(store) == ["next"]
    finally:
        await store.close()


class _LockedFile:
    """A connection whose BEGIN IMMEDIATE finds the lock taken, with a given result code."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.in_transaction = False
        self._spare = sqlite3.connect(":memory:")

    def execute(self, sql: str) -> sqlite3.Cursor:
        if sql.startswith("BEGIN"):
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = self.code
            raise exc
        return self._spare.execute(sql)


@pytest.mark.parametrize("code", [5, 261, 517], ids=["BUSY", "BUSY_RECOVERY", "BUSY_SNAPSHOT"])
def test_every_busy_result_code_sends_the_batch_to_wait_for_the_lock(code: int) -> None:
    # Python reports the extended code: a BEGIN racing another process's commit is
    # BUSY_SNAPSHOT, a WAL recovery BUSY_RECOVERY. Both mean "wait", not "unavailable". (A
    # stand-in connection: the races cannot be provoked on demand.)
    db = SqliteDatabase(":memory:")
    try:
        assert db._begin_at_once(_LockedFile(code)) is False  # type: ignore[arg-type]
    finally:
        db._executor.shutdown()
        db._checkpoint_executor.shutdown()
