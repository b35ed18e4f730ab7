"""SQLite backend (WAL): one connection, with group commit.

Units of work (``run``) queue up while a commit is on disk and then run together in one
``BEGIN IMMEDIATE ... COMMIT``, each inside its own SAVEPOINT, so one fsync acknowledges many
webhooks and a failing unit rolls back alone. A unit only awaits its Connection, whose methods
complete at once, so the coroutine is driven without an event loop. The statements run on the
event loop's thread and only the COMMIT, which waits for the disk, on the database thread.
``BEGIN IMMEDIATE`` takes the write lock up front, so two processes sharing a file also
serialise: when the lock is taken, the batch waits on the database thread (the busy timeout).

Checkpoints (copying the WAL back into the database file, with its own fsync) run on a second
connection and thread every ``CHECKPOINT_INTERVAL`` seconds instead of inside whichever commit
crosses SQLite's automatic threshold: a PASSIVE checkpoint never blocks writers, so no webhook
waits for one.
"""

import asyncio
import contextlib
import functools
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.store.base import Row, SqlStore, Work
from voicedrive_receiver.store.schema import Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\$(\d+)")
# Units committed together at most; bounds the time one batch holds the write lock.
MAX_BATCH = 256
CHECKPOINT_INTERVAL = 1.0


@functools.lru_cache(maxsize=1024)
def _sqlite_sql(sql: str) -> str:
    # Cached: the statements are a few constants, rewritten on every execution otherwise.
    return _PLACEHOLDER.sub(r"?\1", sql)


def _rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Row]:
    cur = conn.execute(_sqlite_sql(sql), args)
    try:
        return [dict(r) for r in cur.fetchall()]
    finally:
        cur.close()


class _SyncConn:
    """A Connection whose awaits never suspend: it runs on the database thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        self._conn.execute(_sqlite_sql(sql), args).close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return _rows(self._conn, sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = _rows(self._conn, sql, args)
        return rows[0] if rows else None


class _HopConn:
    """A Connection used from the event loop: each statement hops to the database thread."""

    def __init__(self, db: "SqliteDatabase") -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> None:
        await self._db.call(lambda c: c.execute(_sqlite_sql(sql), args).close())

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._db.call(lambda c: _rows(c, sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


@dataclass(frozen=True, slots=True)
class _Statement:
    """A unit of work that is one statement (a read, an update); ``insert``: its rowid."""

    sql: str
    args: tuple[Any, ...]
    insert: bool = False


def _execute(conn: sqlite3.Connection, statement: _Statement) -> list[Row] | int:
    if not statement.insert:
        return _rows(conn, statement.sql, statement.args)
    # The journal insert, once per webhook on the loop's thread: ``lastrowid`` costs half of
    # what a RETURNING row read into a dict does.
    cur = conn.execute(_sqlite_sql(statement.sql), statement.args)
    try:
        if cur.lastrowid is None:
            raise sqlite3.InterfaceError("INSERT gave no rowid")
        return cur.lastrowid
    finally:
        cur.close()


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to completion, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a SQLite unit of work awaited something other than its connection")


def _outcome(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"SQLite store: {exc}")
    return exc


def _run_units(
    conn: sqlite3.Connection, works: list[Work[Any] | _Statement]
) -> list[tuple[bool, Any]]:
    """Each unit inside the open transaction: a failing one is undone alone."""
    outcomes: list[tuple[bool, Any]] = []
    sync = _SyncConn(conn)
    for work in works:
        if isinstance(work, _Statement):
            # A statement that fails is undone by SQLite alone (statement journal), so no
            # savepoint: two statements fewer per webhook, the hot path.
            changes = conn.total_changes
            try:
                outcomes.append((True, _execute(conn, work)))
            except Exception as exc:
                if not conn.in_transaction or conn.total_changes != changes:
                    # SQLite rolled the transaction back (I/O, disk full), or the statement's
                    # changes stand (it failed reading its RETURNING rows): then nothing of
                    # the batch may commit.
                    raise StoreUnavailable(f"SQLite store: {exc}") from exc
                outcomes.append((False, _outcome(exc)))
            continue
        conn.execute("SAVEPOINT unit").close()
        try:
            outcomes.append((True, _drive(work(sync))))
        except Exception as exc:
            conn.execute("ROLLBACK TO unit").close()
            outcomes.append((False, _outcome(exc)))
        conn.execute("RELEASE unit").close()
    return outcomes


def _commit(conn: sqlite3.Connection) -> None:
    """COMMIT, or ROLLBACK when it fails: on the database thread, whoever still awaits it."""
    try:
        conn.execute("COMMIT").close()
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK").close()
        raise


def _failed_batch(
    conn: sqlite3.Connection, exc: sqlite3.Error | StoreUnavailable, count: int
) -> list[tuple[bool, Any]]:
    """Roll back what is left of a batch that cannot commit; every unit is unavailable."""
    if conn.in_transaction:
        conn.execute("ROLLBACK").close()
    failure = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(f"SQLite store: {exc}")
    return [(False, failure)] * count


class SqliteDatabase:
    """A SQLite file opened in WAL mode with synchronous=FULL (a 2xx means on disk)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._queue: list[tuple[Work[Any] | _Statement, asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        # The last job handed to the database thread; its one worker runs jobs in order.
        self._worker_job: asyncio.Future[Any] | None = None
        self._checkpoint_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sqlite-checkpoint"
        )
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the file (creating its directory) and set the pragmas."""

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL").close()
            conn.execute("PRAGMA synchronous=FULL").close()
            conn.execute("PRAGMA foreign_keys=ON").close()
            if self.path != ":memory:":
                conn.execute("PRAGMA wal_autocheckpoint=0").close()
            return conn

        def connect_checkpointer() -> sqlite3.Connection:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous=FULL").close()
            return conn

        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, connect)
            if self.path != ":memory:":
                self._checkpoint_conn = await loop.run_in_executor(
                    self._checkpoint_executor, connect_checkpointer
                )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path!r}: {exc}") from None
        if self._checkpoint_conn is not None:
            self._checkpointer = asyncio.create_task(
                self._checkpoint_loop(), name="sqlite-checkpoint"
            )

    async def _checkpoint_loop(self) -> None:
        conn = self._checkpoint_conn
        assert conn is not None
        loop = asyncio.get_running_loop()

        def checkpoint() -> None:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").close()

        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            try:
                await loop.run_in_executor(self._checkpoint_executor, checkpoint)
            except sqlite3.Error as exc:
                # A busy or failing checkpoint is retried next round; the WAL just grows.
                log.warning("SQLite checkpoint failed", extra={"err": str(exc)})

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the database thread; only while holding the lock (``transaction``).

        Batches use the connection from the loop's thread under the same lock, so a call
        outside it could use the connection beside them.
        """
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("SQLite store is closed")
        try:
            return await self._on_worker(fn, conn)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from None

    async def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the database thread, remembered until it is done.

        Shielded: a caller cancelled meanwhile does not stop the job, and the connection stays
        the worker's until it ends (``_reclaim``).
        """
        job = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._worker_job = job
        return await asyncio.shield(job)

    async def _reclaim(self, conn: sqlite3.Connection) -> None:
        """Under the lock, before the loop's thread uses the connection.

        A job whose caller was cancelled may still run on the database thread: wait for it.
        A transaction still open then was left by a cancelled caller (only the lock holder
        may have one): roll it back, or every later BEGIN would fail.
        """
        job = self._worker_job
        if job is not None and not job.done():
            await asyncio.wait([job])
        if conn.in_transaction:
            conn.execute("ROLLBACK").close()

    async def run(self, work: Work[T], *, lock_key: str | None = None) -> T:
        """Queue ``work`` for the next group commit and wait until it is on disk."""
        del lock_key  # the whole file is the lock
        result: T = await self._enqueue(work)
        return result

    async def statement(self, sql: str, *args: Any) -> list[Row]:
        """One statement as a unit of work (shares the next group commit)."""
        rows: list[Row] = await self._enqueue(_Statement(sql, args))
        return rows

    async def insert(self, sql: str, *args: Any) -> int:
        """One INSERT as a unit of work (shares the next group commit); the new row's id."""
        rowid: int = await self._enqueue(_Statement(sql, args, insert=True))
        return rowid

    async def _enqueue(self, work: Work[Any] | _Statement) -> Any:
        if self._conn is None:
            raise StoreUnavailable("SQLite store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name="sqlite-commit")
        return await future

    async def _commit_loop(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                async with self._lock:
                    outcomes = await self._run_batch([w for w, _ in batch])
            except BaseException as exc:
                failure = _outcome(exc)
                outcomes = [(False, failure)] * len(batch)
                if not isinstance(exc, Exception):
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(StoreUnavailable("SQLite store is closing"))
                    raise
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    async def _run_batch(self, works: list[Work[Any] | _Statement]) -> list[tuple[bool, Any]]:
        """The statements on the event loop's thread, the COMMIT (its fsync) on the database's.

        Handing each statement to a thread cost more than running it: the thread waited for
        the interpreter lock and a CPU at every hop while the loop parsed webhooks, and a batch
        took about 3 ms of handoffs for 0.5 ms of work. One hop, for the fsync, is left. When
        another connection holds the write lock, the whole batch waits for it on the database
        thread (the busy timeout) instead of blocking the loop.
        """
        conn = self._conn
        if conn is None:
            return [(False, StoreUnavailable("SQLite store is closed"))] * len(works)
        try:
            await self._reclaim(conn)
            began = self._begin_at_once(conn)
        except sqlite3.Error as exc:
            return _failed_batch(conn, exc, len(works))
        if not began:
            return await self._on_worker(self._run_batch_waiting, works)
        try:
            outcomes = _run_units(conn, works)
            await self._on_worker(_commit, conn)
        except (sqlite3.Error, StoreUnavailable) as exc:
            return _failed_batch(conn, exc, len(works))
        return outcomes

    def _begin_at_once(self, conn: sqlite3.Connection) -> bool:
        """BEGIN IMMEDIATE without waiting; False when another connection holds the lock."""
        conn.execute("PRAGMA busy_timeout = 0").close()
        try:
            conn.execute("BEGIN IMMEDIATE").close()
            began = True
        except sqlite3.OperationalError as exc:
            # The extended codes too: BUSY_SNAPSHOT (a commit raced this BEGIN), BUSY_RECOVERY.
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            began = False
        finally:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}").close()
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK").close()
                raise
        return began

    def _run_batch_waiting(self, works: list[Work[Any] | _Statement]) -> list[tuple[bool, Any]]:
        """The whole batch on the database thread, waiting for the write lock if need be."""
        conn = self._conn
        if conn is None:
            return [(False, StoreUnavailable("SQLite store is closed"))] * len(works)
        try:
            conn.execute("BEGIN IMMEDIATE").close()
        except sqlite3.Error as exc:
            return _failed_batch(conn, exc, len(works))
        try:
            outcomes = _run_units(conn, works)
            _commit(conn)
        except (sqlite3.Error, StoreUnavailable) as exc:
            return _failed_batch(conn, exc, len(works))
        return outcomes

    @asynccontextmanager
    async def transaction(self, *, lock_key: str | None = None) -> AsyncIterator[_HopConn]:
        """BEGIN IMMEDIATE ... COMMIT around a block of awaited statements (slower than run)."""
        del lock_key
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreUnavailable("SQLite store is closed")
            await self._reclaim(conn)
            await self.call(lambda c: c.execute("BEGIN IMMEDIATE").close())
            try:
                yield _HopConn(self)
            except BaseException:
                if self._conn is not None:
                    await asyncio.shield(self.call(lambda c: c.execute("ROLLBACK").close()))
                raise
            await self.call(_commit)

    async def close(self) -> None:
        """Finish queued work, checkpoint, then close the connections and their threads."""
        loop = asyncio.get_running_loop()
        if self._committer is not None and not self._committer.done():
            await self._committer
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        checkpoint_conn, self._checkpoint_conn = self._checkpoint_conn, None
        if checkpoint_conn is not None:
            await loop.run_in_executor(self._checkpoint_executor, checkpoint_conn.close)
        self._checkpoint_executor.shutdown(wait=False)
        conn, self._conn = self._conn, None
        if conn is not None:

            def finish() -> None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
                conn.close()

            await loop.run_in_executor(self._executor, finish)
        self._executor.shutdown(wait=False)


async def open_sqlite_store(path: str, *, busy_timeout: float = 5.0) -> SqlStore:
    """Open ``path``, run migrations, return the store."""
    db = SqliteDatabase(path, busy_timeout=busy_timeout)
    await db.open()
    store = SqlStore(db)
    try:
        await store.migrate()
    except BaseException:
        await db.close()
        raise
    return store
