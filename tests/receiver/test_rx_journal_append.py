"""Journal appends on PostgreSQL: webhooks answered at once share one insert, each keeps its row."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver.errors import StoreRejected, StoreUnavailable
from voicedrive_receiver.store import open_postgres_store
from voicedrive_receiver.store.base import Row, SqlStore
from voicedrive_receiver.store.journal import MAX_APPEND_BATCH

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(postgres: ThrowawayPostgres) -> AsyncIterator[SqlStore]:
    opened = await open_postgres_store(postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}"))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def statements(store: SqlStore) -> list[str]:
    """The SQL of every statement the store sends from now on."""
    sent: list[str] = []
    real = store.db.statement

    async def counting(sql: str, *args: Any) -> list[Row]:
        sent.append(sql)
        return await real(sql, *args)

    store.db.statement = counting  # type: ignore[method-assign]
    return sent


async def _append(store: SqlStore, payload: str) -> int:
    return await store.journal.append(
        group_key="{}:{g}", received_at=1.0, owner="here:9095", payload=payload
    )


async def _payloads(store: SqlStore) -> dict[int, str]:
    rows = await store.db.statement("SELECT id, payload FROM webhook_journal")
    return {int(r["id"]): r["payload"] for r in rows}


async def test_appends_waiting_at_once_share_one_statement_per_batch(
    store: SqlStore, statements: list[str]
) -> None:
    await asyncio.gather(*(_append(store, f"body-{n}") for n in range(MAX_APPEND_BATCH + 1)))
    assert len(statements) == 2  # a full batch, then the one left over


async def test_each_append_gets_the_id_of_its_own_row(store: SqlStore) -> None:
    ids = await asyncio.gather(*(_append(store, f"body-{n}") for n in range(100)))
    stored = await _payloads(store)
    assert [stored[i] for i in ids] == [f"body-{n}" for n in range(100)]


async def test_ids_follow_the_order_in_which_bodies_were_journaled(store: SqlStore) -> None:
    ids = await asyncio.gather(*(_append(store, f"body-{n}") for n in range(100)))
    assert list(ids) == sorted(ids)


async def test_a_body_the_server_refuses_fails_alone_in_its_batch(store: SqlStore) -> None:
    bodies = ["good-1", "bad-\x00", "good-2"]  # PostgreSQL text cannot hold U+0000
    results = await asyncio.gather(*(_append(store, b) for b in bodies), return_exceptions=True)
    assert isinstance(results[1], StoreRejected)
    stored = await _payloads(store)
    assert sorted(stored.values()) == ["good-1", "good-2"]
    assert stored[results[0]] == "good-1"  # type: ignore[index]
    assert stored[results[2]] == "good-2"  # type: ignore[index]


async def test_a_lone_refused_body_is_sent_to_the_server_once(
    store: SqlStore, statements: list[str]
) -> None:
    with pytest.raises(StoreRejected):
        await _append(store, "bad-\x00")
    assert len(statements) == 1


async def test_appends_waiting_when_the_flusher_is_cancelled_are_answered_unavailable(
    store: SqlStore,
) -> None:
    waiting = [
        asyncio.create_task(_append(store, f"body-{n}")) for n in range(MAX_APPEND_BATCH + 5)
    ]
    await asyncio.sleep(0)  # every append queued, the flusher started on the first batch
    flusher = store.journal._appender._flusher  # type: ignore[union-attr]
    assert flusher is not None
    flusher.cancel()
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert all(isinstance(r, StoreUnavailable) for r in results)
