"""SQLite backend (WAL): one connection owned by one thread, transactions serialised.

``BEGIN IMMEDIATE`` takes the write lock up front, so two processes sharing a file also
serialise (the busy timeout makes the second wait instead of failing at once).
"""

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.store.base import Row, SqlStore
from voicedrive_receiver.store.schema import Dialect

T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _sqlite_sql(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


class _Conn:
    def __init__(self, db: "SqliteDatabase") -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> None:
        await self._db.run(lambda c: c.execute(_sqlite_sql(sql), args).close())

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        def go(c: sqlite3.Connection) -> list[Row]:
            cur = c.execute(_sqlite_sql(sql), args)
            try:
                return [dict(r) for r in cur.fetchall()]
            finally:
                cur.close()

        return await self._db.run(go)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


class SqliteDatabase:
    """A SQLite file opened in WAL mode with synchronous=FULL (a 2xx means on disk)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the file (creating its directory) and set the pragmas."""

        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
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
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path!r}: {exc}") from None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection's thread."""
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("SQLite store is closed")

        def call() -> T:
            return fn(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from None

    @asynccontextmanager
    async def transaction(self, *, lock_key: str | None = None) -> AsyncIterator[_Conn]:
        """BEGIN IMMEDIATE ... COMMIT; the whole file is the lock, so ``lock_key`` is moot."""
        del lock_key
        async with self._lock:
            await self.run(lambda c: c.execute("BEGIN IMMEDIATE").close())
            try:
                yield _Conn(self)
            except BaseException:
                if self._conn is not None:
                    await asyncio.shield(self.run(lambda c: c.execute("ROLLBACK").close()))
                raise
            await self.run(lambda c: c.execute("COMMIT").close())

    async def close(self) -> None:
        """Close the connection and its thread."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
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
