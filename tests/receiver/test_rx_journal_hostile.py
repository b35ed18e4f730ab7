"""Input the store cannot take as it is: it pages, fails visibly, or is refused with a 400."""

import asyncio
import random
import string
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from rx_helpers import TOKEN, alert, harness, make_config, payload, postgres_harness

from voicedrive_common.clock import FakeClock
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver.store import open_postgres_store, open_sqlite_store


def _noise(length: int) -> str:
    # Incompressible text: PostgreSQL compresses a repeated character below its index limit.
    rng = random.Random(length)
    return "".join(rng.choice(string.ascii_letters) for _ in range(length))


@pytest.mark.integration
async def test_a_nul_character_in_an_annotation_still_pages_on_postgres(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    body = payload(alert(level="2"))
    body["commonAnnotations"]["summary"] = "API\x00slow"
    async with harness(make_config(tmp_path), await open_postgres_store(dsn), clock) as rx:
        assert (await rx.post(body, process=False)).status == 200
        [done] = await rx.processor.process_pending()
        assert done.outcome == "stored"
        [incident] = await rx.store.list_incidents()
        assert incident.summary == "API\ufffdslow"


@pytest.mark.integration
async def test_a_nul_character_in_the_group_key_is_accepted_on_postgres(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    body = payload(alert(level="2"), group_key='{}:{alertname="a\x00b"}')
    async with harness(make_config(tmp_path), await open_postgres_store(dsn), clock) as rx:
        resp = await rx.post(body)
        assert resp.status == 200, await resp.text()
        assert [p.outcome for p in rx.processed] == ["stored"]


@pytest.mark.integration
async def test_a_notification_postgres_refuses_for_good_is_kept_as_failed_and_others_go_on(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    # Longer than a PostgreSQL index row may be: accepted by the webhook, refused by the store.
    refused = payload(alert(level="2", fingerprint=_noise(9000)), group_key="{}:{g=refused}")
    fine = payload(alert(level="2"), group_key="{}:{g=fine}")
    async with harness(make_config(tmp_path), await open_postgres_store(dsn), clock) as rx:
        for body in (refused, fine):
            assert (await rx.post(body, process=False)).status == 200
        outcomes = [p.outcome for p in await rx.processor.process_pending()]
        assert outcomes == ["failed", "stored"]
        stats = await rx.store.journal.stats()
        assert (stats.pending, stats.failed) == (0, 1)


async def test_after_a_restart_the_backlog_limit_counts_what_is_still_journaled(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    config = replace(config, server=replace(config.server, max_backlog=2))
    path = str(tmp_path / "rx.db")
    async with harness(config, await open_sqlite_store(path), clock) as before:
        for n in range(2):
            await before.post(payload(group_key=f"{{}}:{{g{n}}}"), process=False)
    async with harness(config, await open_sqlite_store(path), clock) as after:
        await after.processor.refresh_gauges()  # what the processing loop does every second
        assert (await after.post(payload(group_key="{}:{g2}"), process=False)).status == 503


@pytest.mark.integration
async def test_the_backlog_gauges_keep_counting_while_processing_fails(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    async with harness(make_config(tmp_path), await open_postgres_store(dsn), clock) as rx:
        # A full disk: reads answer, every write of an incident fails (SQLSTATE 53100).
        postgres.psql(
            "CREATE FUNCTION disk_full() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'no space' USING ERRCODE = 'disk_full'; END $$ LANGUAGE plpgsql; "
            "CREATE TRIGGER disk_full BEFORE INSERT ON incidents "
            "FOR EACH ROW EXECUTE FUNCTION disk_full();",
            database=dsn.rsplit("/", 1)[1],
        )
        assert (await rx.post(payload(alert(level="2")), process=False)).status == 200
        clock.advance(30)
        stop = asyncio.Event()
        loop = asyncio.create_task(rx.processor.run(stop))
        try:
            async with asyncio.timeout(5):
                while rx.services.metrics.journal.pending == 0:  # noqa: ASYNC110 - a snapshot, no event
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await loop
        journal = rx.services.metrics.journal
        assert (journal.pending, journal.oldest_age) == (1, 30.0)


@pytest.mark.integration
async def test_an_acknowledgement_postgres_cannot_store_is_a_400_not_a_503(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    async with postgres_harness(postgres, make_config(tmp_path), clock) as rx:
        incident_id = (await rx.ingest(payload(alert(level="2")))).incident_id
        resp = await rx.client.post(
            f"/api/incidents/{incident_id}/ack",
            json={"by": "sa\x00to"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert resp.status == 400, await resp.text()


@pytest.mark.integration
async def test_an_urgent_group_key_longer_than_an_index_row_is_journaled_on_postgres(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    # The journal indexes a prefix of the key: a 503 here would be repeated forever.
    long_key = "{}:{g=" + _noise(9000) + "}"
    async with postgres_harness(postgres, make_config(tmp_path), clock) as rx:
        resp = await rx.post(payload(alert(level="4"), group_key=long_key), process=False)
        assert resp.status == 200, await resp.text()
        [done] = await rx.processor.process_pending()
        assert done.outcome == "failed"  # as any group key too long for the store (a row kept)
        assert (await rx.store.journal.stats()).pending == 0
