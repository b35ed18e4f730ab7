"""In-doubt reconciliation: an attempt without an outcome is looked up before it is resent."""

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from rx_helpers import (
    FAKE_TYPES,
    Harness,
    RecordingChannel,
    alert,
    config_text,
    harness,
    make_config,
    payload,
)

from voicedrive_common.clock import FakeClock
from voicedrive_common.confload import parse_yaml
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage, Reconciler
from voicedrive_receiver.config import parse_config
from voicedrive_receiver.store import open_postgres_store, open_sqlite_store

FOUND = DeliveryResult(ok=True, detail="found", upstream_id="1756684800.000100")
LOOKUP_FAILED = DeliveryResult(ok=False, detail="slack conversations.history: error missing_scope")
LEASE = 60.0


class ReconcilingChannel(RecordingChannel):
    """A recording channel that can also answer lookups, from a script."""

    def __init__(
        self,
        name: str,
        script: Iterable[DeliveryResult] = (),
        lookups: Iterable[DeliveryResult | Exception | None] = (),
    ) -> None:
        super().__init__(name, script)
        self.lookups: deque[DeliveryResult | Exception | None] = deque(lookups)
        self.asked: list[tuple[str, float]] = []

    async def find_delivered(self, message: OutboundMessage, since: float) -> DeliveryResult | None:
        """Record the question; answer the next scripted lookup (not found when empty)."""
        self.asked.append((message.delivery_id, since))
        answer = self.lookups.popleft() if self.lookups else None
        if isinstance(answer, Exception):
            raise answer
        return answer


class HangingChannel(RecordingChannel):
    """Sends that never answer, as an upstream that accepted and then went silent."""

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Record, then wait far beyond any send timeout."""
        self.sent.append(message)
        await asyncio.sleep(30)
        return DeliveryResult(ok=True)


async def crash_mid_send(rx: Harness, channel: str) -> float:
    """Claim the due rows as a worker that dies before recording; the lease then runs out."""
    started = rx.clock.now().timestamp()
    claimed = await rx.store.claim(channel, now=started, limit=10, lease=LEASE, owner="crashed")
    assert claimed
    rx.clock.advance(LEASE + 1)
    return started


def counter(rx: Harness, name: str, **labels: str) -> float:
    value = getattr(rx.services.metrics, name).labels(**labels)._value.get()
    assert isinstance(value, float)
    return value


@pytest.fixture
async def slack_rx(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    """The receiver with a Slack channel that can answer lookups (none scripted yet)."""
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(config, store, clock, channels={"slack": ReconcilingChannel("slack")}) as h:
        yield h


def slack(rx: Harness) -> ReconcilingChannel:
    channel = rx.channels["slack"]
    assert isinstance(channel, ReconcilingChannel)
    return channel


async def test_a_claim_after_a_lease_ran_out_unmarked_is_in_doubt_since_that_attempt(
    rx: Harness,
) -> None:
    await rx.post(payload(alert(level="1")))
    started = await crash_mid_send(rx, "slack")
    now = rx.clock.now().timestamp()
    [row] = await rx.store.claim("slack", now=now, limit=10, lease=LEASE, owner="test")
    assert row.in_doubt
    assert row.doubt_since == started
    assert row.attempt_started_at == now
    assert row.attempts == 2


async def test_a_first_claim_is_not_in_doubt(rx: Harness) -> None:
    await rx.post(payload(alert(level="1")))
    now = rx.clock.now().timestamp()
    [row] = await rx.store.claim("slack", now=now, limit=10, lease=LEASE, owner="test")
    assert not row.in_doubt
    assert row.attempt_started_at == now


async def test_a_retry_after_a_definite_failure_is_not_in_doubt(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    failed = DeliveryResult(ok=False, detail="slack chat.postMessage: HTTP 503")
    channel = ReconcilingChannel("slack", [failed])
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(config, store, clock, channels={"slack": channel}) as rx:
        await rx.post(payload(alert(level="1")))
        await rx.drain()
        clock.advance(600)
        await rx.drain()
        assert len(channel.sent) == 2
        assert channel.asked == []


async def test_an_in_doubt_message_found_upstream_is_marked_delivered_and_not_sent(
    slack_rx: Harness,
) -> None:
    slack(slack_rx).lookups.append(FOUND)
    await slack_rx.post(payload(alert(level="1")))
    await crash_mid_send(slack_rx, "slack")
    await slack_rx.drain()
    assert slack(slack_rx).sent == []
    assert len(slack(slack_rx).asked) == 1
    [incident] = await slack_rx.store.list_incidents()
    full = await slack_rx.store.get_incident(incident.id)
    assert full is not None
    [delivery] = full.deliveries
    assert delivery["state"] == "delivered"
    [event] = [e for e in full.events if e["kind"] == "delivered"]
    assert event["detail"]["reconciled"] is True
    assert counter(slack_rx, "reconciliations", channel="slack", outcome="found") == 1
    slack_rx.clock.advance(3600)
    assert await slack_rx.drain() == 0  # settled: nothing is claimed again


async def test_the_found_message_keeps_the_upstream_id_the_lookup_gave(slack_rx: Harness) -> None:
    slack(slack_rx).lookups.append(FOUND)
    await slack_rx.post(payload(alert(level="1")))
    await crash_mid_send(slack_rx, "slack")
    await slack_rx.drain()
    async with slack_rx.store.db.transaction() as conn:
        row = await conn.fetchrow("SELECT upstream_id FROM outbox WHERE channel = 'slack'")
    assert row is not None
    assert row["upstream_id"] == FOUND.upstream_id


async def test_an_in_doubt_message_not_found_upstream_is_sent_again(slack_rx: Harness) -> None:
    slack(slack_rx).lookups.append(None)
    await slack_rx.post(payload(alert(level="1")))
    await crash_mid_send(slack_rx, "slack")
    await slack_rx.drain()
    assert len(slack(slack_rx).sent) == 1
    assert counter(slack_rx, "reconciliations", channel="slack", outcome="not_found") == 1


async def test_a_lookup_that_cannot_tell_sends_again(slack_rx: Harness) -> None:
    slack(slack_rx).lookups.append(LOOKUP_FAILED)
    await slack_rx.post(payload(alert(level="1")))
    await crash_mid_send(slack_rx, "slack")
    await slack_rx.drain()
    assert len(slack(slack_rx).sent) == 1
    assert counter(slack_rx, "reconciliations", channel="slack", outcome="error") == 1


async def test_a_lookup_that_raises_sends_again(slack_rx: Harness) -> None:
    slack(slack_rx).lookups.append(RuntimeError("bug in the lookup"))
    await slack_rx.post(payload(alert(level="1")))
    await crash_mid_send(slack_rx, "slack")
    await slack_rx.drain()
    assert len(slack(slack_rx).sent) == 1
    assert counter(slack_rx, "reconciliations", channel="slack", outcome="error") == 1


async def test_the_lookup_reaches_back_to_the_first_doubtful_attempt_less_the_margin(
    slack_rx: Harness,
) -> None:
    failed = DeliveryResult(ok=False, detail="slack chat.postMessage: HTTP 503")
    slack(slack_rx).script.append(failed)
    await slack_rx.post(payload(alert(level="1")))
    started = await crash_mid_send(slack_rx, "slack")
    await slack_rx.drain()  # not found, resent, 503: a definite failure of the second attempt
    slack_rx.clock.advance(600)
    await slack_rx.drain()
    margin = slack_rx.services.config.outbox.reconcile_margin
    # The first attempt may still be the one that arrived: both lookups start from it.
    assert [since for _, since in slack(slack_rx).asked] == [started - margin] * 2
    assert len(slack(slack_rx).sent) == 2


async def test_a_result_in_doubt_makes_the_retry_in_doubt(slack_rx: Harness) -> None:
    timed_out = DeliveryResult(ok=False, detail="slack chat.postMessage: timed out", in_doubt=True)
    slack(slack_rx).script.append(timed_out)
    slack(slack_rx).lookups.append(FOUND)
    await slack_rx.post(payload(alert(level="1")))
    started = slack_rx.clock.now().timestamp()
    await slack_rx.drain()
    slack_rx.clock.advance(600)
    await slack_rx.drain()
    margin = slack_rx.services.config.outbox.reconcile_margin
    assert [since for _, since in slack(slack_rx).asked] == [started - margin]
    assert len(slack(slack_rx).sent) == 1  # the timed-out one; the retry found it upstream


async def test_a_local_send_timeout_makes_the_retry_in_doubt(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    # The worker gives a send half the lease: one second here, so the test waits half a second.
    config = replace(config, outbox=replace(config.outbox, lease=1.0))
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(config, store, clock, channels={"slack": HangingChannel("slack")}) as rx:
        await rx.post(payload(alert(level="1")))
        started = clock.now().timestamp()
        await rx.drain(rounds=1)
        clock.advance(600)
        [row] = await store.claim(
            "slack", now=clock.now().timestamp(), limit=10, lease=60, owner="test"
        )
    assert row.in_doubt
    assert row.doubt_since == started


async def test_channels_that_cannot_look_up_resend_an_in_doubt_message(rx: Harness) -> None:
    assert not isinstance(rx.channels["slack"], Reconciler)
    await rx.post(payload(alert(level="1")))
    await crash_mid_send(rx, "slack")
    await rx.drain()
    assert len(rx.channels["slack"].sent) == 1  # at least once
    assert counter(rx, "reconciliations", channel="slack", outcome="not_found") == 0


async def test_reconcile_off_resends_without_asking(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path)
    config = replace(config, outbox=replace(config.outbox, reconcile=False))
    channel = ReconcilingChannel("slack", lookups=[FOUND])
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(config, store, clock, channels={"slack": channel}) as rx:
        await rx.post(payload(alert(level="1")))
        await crash_mid_send(rx, "slack")
        await rx.drain()
    assert channel.asked == []
    assert len(channel.sent) == 1


def test_reconcile_keys_are_read_from_the_outbox_section(tmp_path: Path) -> None:
    text = config_text(tmp_path).replace(
        "  lease: 60s\n", "  lease: 60s\n  reconcile: false\n  reconcile_margin: 2m\n"
    )
    config = parse_config(parse_yaml(text), channel_types=FAKE_TYPES)
    assert (config.outbox.reconcile, config.outbox.reconcile_margin) == (False, 120.0)


@pytest.mark.integration
async def test_postgres_claims_a_row_left_by_a_dead_holder_in_doubt(
    tmp_path: Path, clock: FakeClock, postgres: ThrowawayPostgres
) -> None:
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    store = await open_postgres_store(dsn)
    config = make_config(tmp_path)
    async with harness(config, store, clock) as rx:
        await rx.post(payload(alert(level="1")))
        started = await crash_mid_send(rx, "slack")
        now = clock.now().timestamp()
        [row] = await store.claim("slack", now=now, limit=10, lease=LEASE, owner="test")
        assert (row.doubt_since, row.attempt_started_at) == (started, now)
        retried = await store.mark_retry(
            row, owner="test", now=now, next_attempt_at=now, error="timed out", in_doubt=True
        )
        assert retried
        [again] = await store.claim("slack", now=now, limit=10, lease=LEASE, owner="test")
        assert again.doubt_since == started  # the first doubt is kept
        assert await store.mark_delivered(
            again, owner="test", now=now, upstream_id="ts", reconciled=True
        )


async def test_reconciliations_are_exposed_per_channel_and_outcome(slack_rx: Harness) -> None:
    slack(slack_rx).lookups.append(FOUND)
    await slack_rx.post(payload(alert(level="1")))
    await crash_mid_send(slack_rx, "slack")
    await slack_rx.drain()
    text = await (await slack_rx.client.get("/metrics")).text()
    assert 'voicedrive_receiver_reconciliations_total{channel="slack",outcome="found"} 1.0' in text
    assert 'voicedrive_receiver_reconciliations_total{channel="sms",outcome="error"} 0.0' in text
