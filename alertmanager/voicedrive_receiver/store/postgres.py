"""PostgreSQL backend (asyncpg pool), shared by every receiver replica.

Per-group transactions take ``pg_advisory_xact_lock`` on the group key, so two replicas
receiving the same group at once run one after the other; the unique constraints then make
the second a duplicate.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from voicedrive_receiver.errors import StoreRejected, StoreUnavailable
from voicedrive_receiver.store.base import Row, SqlStore, Work
from voicedrive_receiver.store.schema import Dialect, advisory_lock

log = logging.getLogger(__name__)
T = TypeVar("T")

# Anything the server or the network can throw at us now; the caller answers 503 and retries.
_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
# ... except these, which the same data raises every time (SQLSTATE classes 22 and 54).
_REJECTED = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


def _store_error(exc: BaseException) -> StoreUnavailable:
    name = type(exc).__name__
    if isinstance(exc, _REJECTED):
        return StoreRejected(f"PostgreSQL store refused the data: {name}")
    return StoreUnavailable(f"PostgreSQL store: {name}")


class _Conn:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row = await self._conn.fetchrow(sql, *args)
        return dict(row) if row is not None else None


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A pooled connection returned without asyncpg's reset round trip.

    The receiver leaves no session state behind: no LISTEN, no SET, no cursor outside a
    transaction, and only transaction-scoped advisory locks. asyncpg still rolls back an open
    transaction on release; the reset query (one more round trip per unit of work, ~10 % of
    an ingest) would only undo state that never exists.
    """

    def get_reset_query(self) -> str:
        """Nothing to reset (see the class docstring)."""
        return ""


class PostgresDatabase:
    """An asyncpg pool."""

    dialect: Dialect = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        password: str | None = None,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._password = password
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: Any = None

    async def open(self) -> None:
        """Create the pool; StoreUnavailable names the problem, never the DSN."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                password=self._password,
                min_size=self._pool_min,
                max_size=self._pool_max,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                connection_class=_PooledConnection,
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL store: {type(exc).__name__}"
            ) from None

    @asynccontextmanager
    async def transaction(self, *, lock_key: str | None = None) -> AsyncIterator[_Conn]:
        """A transaction on a pooled connection; errors become StoreUnavailable."""
        if self._pool is None:
            raise StoreUnavailable("PostgreSQL store is closed")
        try:
            async with (
                self._pool.acquire(timeout=self._connect_timeout) as conn,
                conn.transaction(),
            ):
                if lock_key is not None:
                    await conn.execute("SELECT " + advisory_lock("$1"), lock_key)
                yield _Conn(conn)
        except _UNAVAILABLE as exc:
            log.warning("store operation failed", extra={"err": f"{type(exc).__name__}: {exc}"})
            raise _store_error(exc) from None

    async def run(self, work: Work[T], *, lock_key: str | None = None) -> T:
        """``work`` in its own transaction."""
        async with self.transaction(lock_key=lock_key) as conn:
            return await work(conn)

    async def statement(self, sql: str, *args: Any) -> list[Row]:
        """One statement in its own implicit transaction: a single round trip."""
        if self._pool is None:
            raise StoreUnavailable("PostgreSQL store is closed")
        try:
            async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                return [dict(r) for r in await conn.fetch(sql, *args)]
        except _UNAVAILABLE as exc:
            log.warning("store operation failed", extra={"err": f"{type(exc).__name__}: {exc}"})
            raise _store_error(exc) from None

    async def insert(self, sql: str, *args: Any) -> int:
        """One INSERT in its own implicit transaction; the new row's id."""
        rows = await self.statement(sql + " RETURNING id", *args)
        return int(rows[0]["id"])

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def open_postgres_store(
    dsn: str,
    *,
    password: str | None = None,
    pool_min: int = 1,
    pool_max: int = 10,
    connect_timeout: float = 5.0,
    command_timeout: float = 5.0,
) -> SqlStore:
    """Connect, run migrations, return the store."""
    db = PostgresDatabase(
        dsn,
        password=password,
        pool_min=pool_min,
        pool_max=pool_max,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    )
    await db.open()
    store = SqlStore(db)
    try:
        await store.migrate()
    except BaseException:
        await db.close()
        raise
    return store
