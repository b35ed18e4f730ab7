"""The real process: SIGKILL mid-batch and restart; two replicas on one PostgreSQL."""

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest
from rx_helpers import alert, payload
from rx_process import process_config, sink, start_receiver

from voicedrive_common.throwaway_pg import ThrowawayPostgres

pytestmark = pytest.mark.integration


def bodies(groups: int) -> list[dict[str, object]]:
    return [
        payload(alert(level="1", fingerprint=f"fp{g}"), group_key=f"group-{g}")
        for g in range(groups)
    ]


async def test_sigkill_mid_batch_then_restart_delivers_every_message(tmp_path: Path) -> None:
    members, groups, concurrency = 20, 4, 2
    expected = members * groups
    async with sink(delay=0.03) as hook:
        config = tmp_path / "receiver.yml"
        config.write_text(
            process_config(
                store=f"sqlite: {{path: {tmp_path / 'rx.db'}}}",
                sink_url=hook.url,
                members=members,
                concurrency=concurrency,
            )
        )
        first = await start_receiver(config, tmp_path / "first.log")
        try:
            async with aiohttp.ClientSession() as session:
                statuses = [await first.post(session, body) for body in bodies(groups)]
            assert statuses == [200] * groups
            await hook.wait_for(expected // 3, seconds=20)
            first.kill()
            await first.proc.wait()
        finally:
            await first.stop()
        at_kill = len(hook.received)
        assert 0 < at_kill < expected  # really in the middle of the batch

        second = await start_receiver(config, tmp_path / "second.log")
        try:
            await hook.wait_for(expected, seconds=30)
            await asyncio.sleep(1.5)  # longer than the lease: anything resent would show now
        finally:
            await second.stop()
    assert len(hook.received) == expected
    # At least once towards the upstream: only messages in flight at the kill may repeat,
    # and the Idempotency-Key lets the far end drop those.
    repeated = [d for d, n in hook.received.items() if n > 1]
    assert len(repeated) <= concurrency
    assert all(n <= 2 for n in hook.received.values())


async def test_two_receivers_on_one_postgres_receiving_the_same_payloads_page_once(
    tmp_path: Path, postgres: ThrowawayPostgres
) -> None:
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    members, groups = 5, 6
    async with sink() as hook:
        config = tmp_path / "receiver.yml"
        config.write_text(
            process_config(
                store='postgres: {dsn: "${RX_PG_DSN}"}', sink_url=hook.url, members=members
            )
        )
        env = {"RX_PG_DSN": dsn}
        replicas = await asyncio.gather(
            start_receiver(config, tmp_path / "a.log", env),
            start_receiver(config, tmp_path / "b.log", env),
        )
        try:
            async with aiohttp.ClientSession() as session:
                statuses = await asyncio.gather(
                    *(rx.post(session, body) for body in bodies(groups) for rx in replicas)
                )
            assert set(statuses) == {200}
            await hook.wait_for(members * groups, seconds=20)
            await asyncio.sleep(1.5)  # beyond the lease: a second send would have happened
        finally:
            for rx in replicas:
                await rx.stop()
    assert len(hook.received) == members * groups
    assert hook.total == members * groups
