"""Urgent notifications (Level 3 and 4) are processed ahead of a backlog of lower levels."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rx_helpers import Harness, alert, harness, make_config, payload, postgres_harness

from voicedrive_common.clock import FakeClock
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver import processing
from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.processing import Processed
from voicedrive_receiver.store import open_sqlite_store
from voicedrive_receiver.store.journal import EarlierRows, JournalEntry

URGENT_GROUP = "{}:{urgent}"


def urgent() -> dict[str, Any]:
    return payload(alert(level="3", alertname="VoiceDriveAPIDown"), group_key=URGENT_GROUP)


async def post_backlog(rx: Harness, count: int, *, group: str | None = None) -> list[int]:
    """``count`` Level 1 notifications, each of its own group unless ``group``; receipts."""
    receipts = []
    for n in range(count):
        body = payload(alert(level="1", fingerprint=f"fp{n}"), group_key=group or f"{{}}:{{g{n}}}")
        receipts.append(await receipt(rx, body))
    return receipts


async def receipt(rx: Harness, body: dict[str, Any]) -> int:
    resp = await rx.post(body, process=False)
    assert resp.status == 200
    return int(json.loads(await resp.text())["receipt"])


async def incident_levels(rx: Harness) -> dict[str, int]:
    return {i.group_key: i.level for i in await rx.store.list_incidents()}


async def test_an_urgent_notification_behind_a_backlog_is_processed_first(rx: Harness) -> None:
    await post_backlog(rx, 5)
    await rx.post(urgent(), process=False)
    [done] = await rx.processor.process_pending()
    assert done.outcome == "stored"
    assert await incident_levels(rx) == {URGENT_GROUP: 3}
    assert (await rx.store.journal.stats()).pending == 5


async def test_an_urgent_groups_earlier_notifications_come_along_in_their_order(
    rx: Harness,
) -> None:
    await post_backlog(rx, 1, group="{}:{other}")
    earlier = await receipt(
        rx, payload(alert(level="1", fingerprint="slow"), group_key=URGENT_GROUP)
    )
    page = await receipt(rx, urgent())
    done = await rx.processor.process_pending()
    assert [p.entry_id for p in done] == [earlier, page]
    assert await incident_levels(rx) == {URGENT_GROUP: 3}


async def test_the_backlog_follows_once_the_urgent_groups_are_done(rx: Harness) -> None:
    await post_backlog(rx, 3)
    await rx.post(urgent(), process=False)
    await rx.drain()
    assert (await rx.store.journal.stats()).pending == 0
    assert len(await incident_levels(rx)) == 4


async def test_a_resolved_notification_is_not_urgent_whatever_its_level(rx: Harness) -> None:
    await post_backlog(rx, 2)
    resolved = alert(level="4", status="resolved", ends_at="2025-09-01T09:05:00+09:00")
    await rx.post(payload(resolved, group_key=URGENT_GROUP), process=False)
    done = await rx.processor.process_pending()
    assert len(done) == 3  # journal order: nobody to page waits behind it


async def stop_after_first(rx: Harness, arrival: dict[str, Any]) -> list[int]:
    """A pass over one group's three rows, with ``arrival`` posted once the first is done."""
    receipts = await post_backlog(rx, 3, group="{}:{busy}")
    process = rx.processor.process

    async def process_then_arrive(entry: JournalEntry) -> Processed:
        done = await process(entry)
        if entry.id == receipts[0]:
            await rx.post(arrival, process=False)
        return done

    rx.processor.process = process_then_arrive  # type: ignore[method-assign]
    return receipts


async def test_a_pass_over_the_backlog_stops_when_an_urgent_notification_arrives(
    rx: Harness,
) -> None:
    receipts = await stop_after_first(rx, urgent())
    done = await rx.processor.process_pending()
    assert [p.entry_id for p in done] == receipts[:1]
    [page] = await rx.processor.process_pending()
    assert await incident_levels(rx) == {"{}:{busy}": 1, URGENT_GROUP: 3}
    assert page.outcome == "stored"


async def test_a_pass_goes_on_when_a_lower_level_notification_arrives(rx: Harness) -> None:
    receipts = await stop_after_first(rx, payload(alert(level="2"), group_key="{}:{late}"))
    done = await rx.processor.process_pending()
    assert [p.entry_id for p in done] == receipts


async def test_rows_left_by_a_stopped_pass_are_processed_next_in_order(rx: Harness) -> None:
    receipts = await stop_after_first(rx, urgent())
    await rx.processor.process_pending()  # stops after the first
    await rx.processor.process_pending()  # the urgent one
    done = await rx.processor.process_pending()
    assert [p.entry_id for p in done] == receipts[1:]


async def test_urgent_rows_journaled_before_a_restart_are_processed_first(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    path = str(tmp_path / "receiver.db")
    async with harness(config, await open_sqlite_store(path), clock) as before:
        await post_backlog(before, 4)
        await before.post(urgent(), process=False)
    async with harness(config, await open_sqlite_store(path), clock) as after:
        [done] = await after.processor.process_pending()
        assert done.outcome == "stored"
        assert await incident_levels(after) == {URGENT_GROUP: 3}


async def test_the_urgent_pass_keeps_the_ordinary_pace_during_a_flood(rx: Harness) -> None:
    processor = rx.processor
    for _ in range(processing.FLOOD):
        processor.ack_started()
    assert processor.start_spacing() == processing.FLOOD_SLICE
    assert processor.start_spacing(urgent=True) == processing.YIELD_SLICE


async def test_the_journal_row_holds_the_level_of_the_firing_alerts_only(rx: Harness) -> None:
    ended = "2025-09-01T09:05:00+09:00"
    resolved_four = alert(level="4", status="resolved", ends_at=ended, fingerprint="b")
    await rx.post(payload(alert(level="2"), resolved_four), process=False)
    await rx.post(payload(resolved_four, group_key="{}:{r}"), process=False)
    rows = await rx.store.db.statement("SELECT level FROM webhook_journal ORDER BY id")
    assert [r["level"] for r in rows] == [2, None]


@pytest.mark.integration
async def test_on_postgres_an_urgent_notification_behind_a_backlog_is_processed_first(
    postgres: ThrowawayPostgres, tmp_path: Path, clock: FakeClock
) -> None:
    async with postgres_harness(postgres, make_config(tmp_path), clock) as rx:
        earlier = await receipt(
            rx, payload(alert(level="1", fingerprint="slow"), group_key=URGENT_GROUP)
        )
        await post_backlog(rx, 5)
        page = await receipt(rx, urgent())
        done = await rx.processor.process_pending()
        assert [p.entry_id for p in done] == [earlier, page]
        assert (await rx.store.journal.stats()).pending == 5


async def test_a_chain_waiting_for_its_start_gives_up_at_once_when_an_urgent_one_waits(
    rx: Harness,
) -> None:
    # Sixteen chains each waiting for a flood-paced start first would hold the page 0.64 s.
    processor = rx.processor
    for _ in range(processing.FLOOD):
        processor.ack_started()
    processor._tokens = 0.0  # the flood has taken every start, just now
    processor._refilled = asyncio.get_running_loop().time()
    since = processor._urgent_arrivals
    processor.accepted(level=4)
    started = processor._yield_to_acks(stop_unless=since)
    assert await asyncio.wait_for(started, processing.FLOOD_SLICE / 2) is False


async def test_an_urgent_notification_the_store_failed_to_look_up_is_still_first(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post_backlog(rx, 3)
    await rx.post(urgent(), process=False)
    journal = rx.store.journal
    monkeypatch.setattr(journal, "urgent", unavailable)
    with pytest.raises(StoreUnavailable):
        await rx.processor.process_pending()
    monkeypatch.undo()
    [done] = await rx.processor.process_pending()
    assert await incident_levels(rx) == {URGENT_GROUP: 3}
    assert done.outcome == "stored"


async def test_an_urgent_group_the_store_keeps_refusing_does_not_hold_the_backlog(
    rx: Harness,
) -> None:
    await post_backlog(rx, 3)
    await rx.post(urgent(), process=False)
    process = rx.processor.process

    async def refuse_urgent(entry: JournalEntry) -> Processed:
        if entry.group_key == URGENT_GROUP:
            await unavailable()
        return await process(entry)

    rx.processor.process = refuse_urgent  # type: ignore[method-assign]
    for _ in range(2):  # the urgent pass, then the backlog's turn (it meets the group too)
        with pytest.raises(StoreUnavailable):
            await rx.processor.process_pending()
    assert (await rx.store.journal.stats()).pending == 1


async def unavailable(*args: object, **kwargs: object) -> Any:
    raise StoreUnavailable("PostgreSQL store: ConnectionDoesNotExistError")


@pytest.fixture
async def limited(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    """A receiver whose backlog limit is two notifications."""
    config = make_config(tmp_path)
    config = replace(config, server=replace(config.server, max_backlog=2))
    async with harness(config, await open_sqlite_store(str(tmp_path / "rx.db")), clock) as rx:
        yield rx


async def test_an_urgent_notification_is_accepted_past_the_backlog_limit(limited: Harness) -> None:
    await post_backlog(limited, 2)
    assert (await limited.post(payload(alert(level="1"), group_key="{}:{g9}"))).status == 503
    assert (await limited.post(urgent(), process=False)).status == 200


async def test_urgent_notifications_are_refused_at_twice_the_backlog_limit(
    limited: Harness,
) -> None:
    await post_backlog(limited, 2)
    statuses = []
    for n in range(3):
        body = payload(alert(level="4", fingerprint=f"u{n}"), group_key=f"{{}}:{{u{n}}}")
        statuses.append((await limited.post(body, process=False)).status)
    assert statuses == [200, 200, 503]


async def test_an_urgent_notification_journaled_while_the_backlog_is_read_stops_that_pass(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post_backlog(rx, 3)
    journal = rx.store.journal
    pending = journal.pending

    async def read_while_a_page_arrives(**kwargs: Any) -> list[JournalEntry]:
        rows = await pending(**kwargs)
        await rx.post(urgent(), process=False)
        return rows

    monkeypatch.setattr(journal, "pending", read_while_a_page_arrives)
    assert await rx.processor.process_pending() == []
    monkeypatch.undo()
    [page] = await rx.processor.process_pending()
    assert page.outcome == "stored"
    assert await incident_levels(rx) == {URGENT_GROUP: 3}


async def test_the_loop_waits_after_a_pass_that_started_nothing_even_with_the_urgent_pass_due(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor = rx.processor
    stop = asyncio.Event()
    passes = waits = 0

    async def nothing_started(**kwargs: object) -> list[Processed]:
        nonlocal passes
        passes += 1
        processor._urgent_check = True  # still due, as after an urgent pass that started nothing
        if passes == 3:
            stop.set()  # bounds the loop should it spin
        return []

    async def wait(*args: object) -> None:
        nonlocal waits
        waits += 1
        stop.set()

    monkeypatch.setattr(processor, "process_pending", nothing_started)
    monkeypatch.setattr(processing, "sleep_until_woken", wait)
    await asyncio.wait_for(processor.run(stop), 5)
    assert (passes, waits) == (1, 1)


async def test_an_urgent_group_whose_earlier_rows_cannot_be_read_does_not_hold_the_backlog(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog = await post_backlog(rx, 3)
    page = await receipt(rx, urgent())
    journal = rx.store.journal
    earlier = journal.earlier

    async def refuse_the_urgent_pass(entries: list[JournalEntry], **kwargs: Any) -> EarlierRows:
        if {e.group_key for e in entries} == {URGENT_GROUP}:
            await unavailable()
        return await earlier(entries, **kwargs)

    monkeypatch.setattr(journal, "earlier", refuse_the_urgent_pass)
    with pytest.raises(StoreUnavailable):
        await rx.processor.process_pending()
    done = await rx.processor.process_pending()  # the backlog's turn
    assert [p.entry_id for p in done] == [*backlog, page]
