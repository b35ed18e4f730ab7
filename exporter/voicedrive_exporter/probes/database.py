"""Database probe: per target, a fresh connection plus ``SELECT 1`` (a pool proves nothing)."""

import asyncio
import logging

from voicedrive_exporter.config import DatabaseSettings, DatabaseTarget
from voicedrive_exporter.probes import pg
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult, merge, sample

log = logging.getLogger("voicedrive_exporter.probes.database")


async def probe(settings: DatabaseSettings, *, deps: ProbeDeps) -> ProbeResult:
    """Check every configured database concurrently, one connection each."""
    del deps  # nothing injected is needed: asyncpg dials the database itself
    results = await asyncio.gather(*(_one(t) for t in settings.targets))
    return merge(results)


async def _one(target: DatabaseTarget) -> ProbeResult:
    loop = asyncio.get_running_loop()
    try:
        async with pg.connection(target.pg) as (conn, connect_seconds):
            started = loop.time()
            rows = await pg.fetch(conn, target.pg, "SELECT 1")
            query_seconds = loop.time() - started
    except pg.PgFailure as exc:
        # Only connection-level reasons are part of the database label set.
        reason = exc.reason if exc.reason in pg.REASONS else "other"
        log.warning(
            "database probe failed",
            extra={"database": target.name, "reason": reason, "detail": exc.detail},
        )
        return _down(target.name, reason)
    if len(rows) != 1 or rows[0][0] != 1:
        log.warning(
            "database probe: SELECT 1 returned something else", extra={"database": target.name}
        )
        return _down(target.name, "other")
    return ProbeResult(
        success=True,
        samples=(
            sample("voicedrive_db_up", 1, database=target.name),
            sample("voicedrive_db_connect_duration_seconds", connect_seconds, database=target.name),
            sample("voicedrive_db_query_duration_seconds", query_seconds, database=target.name),
        ),
    )


def _down(name: str, reason: str) -> ProbeResult:
    return ProbeResult(
        success=False,
        samples=(
            sample("voicedrive_db_up", 0, database=name),
            sample("voicedrive_db_failure_info", 1, database=name, reason=reason),
        ),
        reasons=(reason,),
    )


def failure(settings: DatabaseSettings, reason: str) -> ProbeResult:
    """Every database down with ``reason`` (the run did not finish in time)."""
    return merge([_down(t.name, reason) for t in settings.targets])
