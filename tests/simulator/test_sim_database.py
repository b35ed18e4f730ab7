"""The database proxy in front of the real PostgreSQL, and delivery rows written into it."""

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from sim_helpers import Admin, StartSim

from voicedrive_common.secrets import Secret
from voicedrive_common.throwaway_pg import ThrowawayPostgres, free_port
from voicedrive_sim.server import RunningSimulator
from voicedrive_sim.state import WRITER

pytestmark = pytest.mark.integration


def _via(dsn: str, address: tuple[str, int]) -> str:
    parts = urlsplit(dsn)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@{address[0]}:{address[1]}"))


async def _proxied_sim(start_sim: StartSim, postgres: ThrowawayPostgres) -> RunningSimulator:
    return await start_sim(proxy_host="127.0.0.1", proxy_port=0, proxy_target_port=postgres.port)


async def test_proxy_forwards_to_postgres(start_sim: StartSim, postgres: ThrowawayPostgres) -> None:
    sim = await _proxied_sim(start_sim, postgres)
    assert sim.proxy_address is not None
    conn = await asyncpg.connect(_via(postgres.dsn, sim.proxy_address), timeout=10)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_database_down_cuts_live_connections(
    start_sim: StartSim, postgres: ThrowawayPostgres, session: aiohttp.ClientSession
) -> None:
    sim = await _proxied_sim(start_sim, postgres)
    assert sim.proxy_address is not None
    conn = await asyncpg.connect(_via(postgres.dsn, sim.proxy_address), timeout=10)
    try:
        await Admin(sim, session).put("db", {"down": True})
        with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresError, OSError)):
            await conn.fetchval("SELECT 1", timeout=5)
    finally:
        conn.terminate()


async def test_database_down_refuses_new_connections(
    start_sim: StartSim, postgres: ThrowawayPostgres, session: aiohttp.ClientSession
) -> None:
    sim = await _proxied_sim(start_sim, postgres)
    assert sim.proxy_address is not None
    await Admin(sim, session).put("db", {"down": True})
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*sim.proxy_address)


async def test_database_up_again_accepts_connections_on_the_same_port(
    start_sim: StartSim, postgres: ThrowawayPostgres, session: aiohttp.ClientSession
) -> None:
    sim = await _proxied_sim(start_sim, postgres)
    address = sim.proxy_address
    assert address is not None
    admin = Admin(sim, session)
    await admin.put("db", {"down": True})
    status, faults = await admin.put("db", {"down": False})
    assert status == 200
    assert faults["db"] == {"down": False}
    conn = await asyncpg.connect(_via(postgres.dsn, address), timeout=10)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def _counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM notification_deliveries GROUP BY status"
        )
    finally:
        await conn.close()
    return {row["status"]: row["n"] for row in rows}


async def _wait_rows(sim: RunningSimulator, at_least: int) -> None:
    writer = sim.app[WRITER]
    assert writer is not None
    for _ in range(200):  # bounded: 200 x 50 ms
        if writer.rows_written >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {writer.rows_written} rows written, wanted {at_least}")


async def _writing_sim(
    start_sim: StartSim, postgres: ThrowawayPostgres, **overrides: object
) -> tuple[RunningSimulator, str]:
    dsn = postgres.create_database(f"sim_{uuid.uuid4().hex[:12]}")
    sim = await start_sim(
        db_dsn=Secret(dsn), rows_per_second=200.0, write_interval=0.05, **overrides
    )
    return sim, dsn


async def test_writer_creates_the_table_and_writes_delivered_rows(
    start_sim: StartSim, postgres: ThrowawayPostgres
) -> None:
    sim, dsn = await _writing_sim(start_sim, postgres)
    await _wait_rows(sim, 20)
    counts = await _counts(dsn)
    assert counts.get("delivered", 0) >= 20
    assert "failed" not in counts


async def test_writer_fails_the_configured_share_of_rows(
    start_sim: StartSim, postgres: ThrowawayPostgres
) -> None:
    sim, dsn = await _writing_sim(start_sim, postgres, failure_ratio=0.25)
    await _wait_rows(sim, 40)
    await sim.stop()  # freeze the table so the counts are exact
    counts = await _counts(dsn)
    total = counts["delivered"] + counts["failed"]
    assert counts["failed"] == total // 4


async def test_failure_ratio_changes_at_run_time(
    start_sim: StartSim, postgres: ThrowawayPostgres, session: aiohttp.ClientSession
) -> None:
    sim, dsn = await _writing_sim(start_sim, postgres)
    await Admin(sim, session).put("notifications", {"failure_ratio": 1.0})
    writer = sim.app[WRITER]
    assert writer is not None
    before = writer.rows_written
    await _wait_rows(sim, before + 20)
    counts = await _counts(dsn)
    assert counts["failed"] >= 20


async def test_table_refuses_an_unknown_status(
    start_sim: StartSim, postgres: ThrowawayPostgres
) -> None:
    sim, dsn = await _writing_sim(start_sim, postgres)
    await _wait_rows(sim, 1)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO notification_deliveries (channel, status) VALUES ('sms', 'lost')"
            )
    finally:
        await conn.close()


async def test_writer_resumes_after_the_database_comes_back(
    start_sim: StartSim, postgres: ThrowawayPostgres, session: aiohttp.ClientSession
) -> None:
    proxy_port = free_port()
    dsn = postgres.create_database(f"sim_{uuid.uuid4().hex[:12]}")
    sim = await start_sim(
        db_dsn=Secret(_via(dsn, ("127.0.0.1", proxy_port))),
        rows_per_second=200.0,
        write_interval=0.05,
        proxy_host="127.0.0.1",
        proxy_port=proxy_port,
        proxy_target_port=postgres.port,
    )
    admin = Admin(sim, session)
    await _wait_rows(sim, 5)
    await admin.put("db", {"down": True})
    await asyncio.sleep(0.3)  # the writer must notice the cut before the database returns
    writer = sim.app[WRITER]
    assert writer is not None
    before = writer.rows_written
    await admin.put("db", {"down": False})
    await _wait_rows(sim, before + 5)
    assert (await _counts(dsn))["delivered"] >= before + 5
