"""The webhook journal: a 2xx means journaled; processing follows, once, in order per group."""

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from rx_helpers import Harness, alert, harness, make_config, payload, postgres_harness

from voicedrive_common.clock import FakeClock
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver import processing
from voicedrive_receiver.processing import Processed, Processor
from voicedrive_receiver.store import open_postgres_store, open_sqlite_store

RESOLVED = alert(status="resolved", ends_at="2025-09-01T09:05:00+09:00")


async def test_the_answer_comes_before_processing_and_the_row_waits_in_the_journal(
    rx: Harness,
) -> None:
    resp = await rx.post(payload(alert(level="2")), process=False)
    assert resp.status == 200
    assert (await rx.store.journal.stats()).pending == 1
    assert await rx.store.list_incidents() == []


async def test_processing_opens_the_incident_and_empties_the_journal(rx: Harness) -> None:
    await rx.post(payload(alert(level="2")), process=False)
    [done] = await rx.processor.process_pending()
    assert done.outcome == "stored"
    [incident] = await rx.store.list_incidents()
    assert incident.id == done.incident_id
    assert (await rx.store.journal.stats()).pending == 0


async def test_a_restarted_receiver_processes_what_was_journaled_before_the_crash(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    path = str(tmp_path / "receiver.db")
    async with harness(config, await open_sqlite_store(path), clock) as before:
        resp = await before.post(payload(alert(level="2")), process=False)
        assert resp.status == 200
    async with harness(config, await open_sqlite_store(path), clock) as after:
        await after.drain()
        assert [i.level for i in await after.store.list_incidents()] == [2]
        assert after.channels["email"].contacts() == [("tech_lead", "firing")]


async def test_a_group_is_processed_in_the_order_its_notifications_arrived(rx: Harness) -> None:
    await rx.post(payload(alert(level="2")), process=False)
    await rx.post(payload(alert(level="2"), group_key="{}:{other}"), process=False)
    await rx.post(payload(RESOLVED), process=False)
    outcomes = await rx.processor.process_pending()
    assert [p.outcome for p in outcomes] == ["stored"] * 3
    await rx.drain()
    [first, _] = sorted(await rx.store.list_incidents(), key=lambda i: i.group_key)
    assert first.status == "resolved"
    assert rx.channels["email"].contacts().count(("tech_lead", "resolved")) == 1


@pytest.mark.integration
async def test_another_instances_rows_are_taken_over_only_after_the_lease(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    async with postgres_harness(postgres, make_config(tmp_path), clock) as rx:
        await rx.post(payload(alert(level="2")), process=False)
        lease = rx.services.config.outbox.lease
        other = Processor(replace(rx.services, instance="other"))
        assert await other.process_pending() == []
        clock.advance(lease)
        [done] = await other.process_pending()
        assert done.outcome == "stored"


async def test_on_sqlite_a_receiver_under_another_name_resumes_the_journal_at_once(
    rx: Harness,
) -> None:
    # One receiver per SQLite file: a restart on another port or host name is the same one.
    await rx.post(payload(alert(level="2")), process=False)
    renamed = Processor(replace(rx.services, instance="recreated-container:9918"))
    [done] = await renamed.process_pending()
    assert done.outcome == "stored"


async def test_over_the_backlog_limit_the_webhook_answers_503_until_processing_catches_up(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    config = replace(config, server=replace(config.server, max_backlog=2))
    async with harness(config, await open_sqlite_store(str(tmp_path / "rx.db")), clock) as rx:
        groups = [f"{{}}:{{g{n}}}" for n in range(4)]
        first = [(await rx.post(payload(group_key=g), process=False)).status for g in groups[:3]]
        assert first == [200, 200, 503]
        assert rx.services.metrics.webhooks.labels(outcome="backlogged")._value.get() == 1
        await rx.processor.process_pending()
        assert (await rx.post(payload(group_key=groups[3]), process=False)).status == 200


async def test_the_journal_gauges_show_backlog_age_and_failures(
    rx: Harness, clock: FakeClock
) -> None:
    await rx.post(payload(alert(level="2")), process=False)
    clock.advance(7)
    await rx.processor.refresh_gauges()
    journal = rx.services.metrics.journal
    assert (journal.pending, journal.oldest_age, journal.failed) == (1, 7.0, 0)


@pytest.mark.integration
async def test_two_processors_on_one_postgres_process_each_notification_once(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    config = make_config(tmp_path)
    async with harness(config, await open_postgres_store(dsn), clock) as rx:
        for n in range(20):
            await rx.post(payload(group_key=f"{{}}:{{g{n}}}"), process=False)
        clock.advance(config.outbox.lease)  # both may take every row
        other = Processor(replace(rx.services, instance="other"))
        ours, theirs = await asyncio.gather(rx.processor.process_pending(), other.process_pending())
        outcomes = [p.outcome for p in ours + theirs]
        assert outcomes.count("stored") == 20
        assert set(outcomes) <= {"stored", "elsewhere"}
        assert len(await rx.store.list_incidents()) == 20


@pytest.mark.integration
async def test_a_peer_row_passed_over_earlier_is_taken_over_once_abandoned(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    async with postgres_harness(postgres, make_config(tmp_path), clock) as rx:
        peer_body = json.dumps(payload(group_key="{}:{peer}"))
        await rx.store.journal.append(
            group_key="{}:{peer}",
            received_at=clock.now().timestamp(),
            owner="peer",
            payload=peer_body,
        )
        own = await rx.ingest(payload(alert(level="2")))
        assert own.outcome == "stored"  # the live peer's older row was passed over
        clock.advance(rx.services.config.outbox.lease)
        [taken] = await rx.processor.process_pending()  # below the cursor, found again
        assert taken.outcome == "stored"
        groups = {i.group_key for i in await rx.store.list_incidents()}
        assert groups == {'{}:{alertname="VoiceDriveApiSlow"}', "{}:{peer}"}


async def test_an_unexpected_error_does_not_end_the_processing_loop(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rx.post(payload(alert(level="2")), process=False)
    processor = rx.processor
    real = processor.process_pending
    calls = 0

    async def flaky(**kwargs: object) -> list[Processed]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug")
        return await real()

    monkeypatch.setattr(processor, "process_pending", flaky)
    monkeypatch.setattr(processing, "REFRESH_INTERVAL", 0.01)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(processor.run(stop))
    async with asyncio.timeout(5):
        while not await rx.store.list_incidents():  # noqa: ASYNC110 - the store has no event
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(loop_task, 5)
    assert calls >= 2


async def test_processing_yields_to_webhooks_being_answered(rx: Harness) -> None:
    processor = rx.processor
    assert processor.start_spacing() is None
    processor.ack_started()
    assert processor.start_spacing() == processing.YIELD_SLICE
    processor.ack_finished()
    assert processor.start_spacing() == processing.YIELD_SLICE  # answered a moment ago


async def test_processing_slows_to_the_flood_pace_while_many_webhooks_wait(rx: Harness) -> None:
    processor = rx.processor
    for _ in range(processing.FLOOD - 1):
        processor.ack_started()
    assert processor.start_spacing() == processing.YIELD_SLICE
    processor.ack_started()
    assert processor.start_spacing() == processing.FLOOD_SLICE
    processor.ack_finished()
    assert processor.start_spacing() == processing.FLOOD_SLICE  # a moment after the flood
    processor.last_flood -= processing.ACTIVE_WINDOW  # the moment has passed
    assert processor.start_spacing() == processing.YIELD_SLICE


async def test_the_flood_pace_lasts_while_the_flood_waits_for_its_answers(rx: Harness) -> None:
    # A slow store: 16 webhooks wait and none begins, yet the loop is still theirs.
    processor = rx.processor
    for _ in range(processing.FLOOD):
        processor.ack_started()
    processor.last_flood -= processing.ACTIVE_WINDOW
    processor.last_ack -= processing.ACTIVE_WINDOW
    assert processor.start_spacing() == processing.FLOOD_SLICE
