import asyncpg

from voicedrive_common.throwaway_pg import ThrowawayPostgres, free_ports


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


def test_free_ports_asked_for_together_are_distinct() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
