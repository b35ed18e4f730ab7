import asyncpg

from voicedrive_common.throwaway_pg import ThrowawayPostgres


async def test_cluster_accepts_password_login_over_tcp(postgres: ThrowawayPostgres) -> None:
    conn = await asyncpg.connect(postgres.dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_role_with_special_character_password_connects(postgres: ThrowawayPostgres) -> None:
    dsn = postgres.create_role("special", "p@ss#w:o/r%d&x=y!'z")
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT current_user") == "special"
    finally:
        await conn.close()
