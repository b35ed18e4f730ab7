"""Delivery: fan-out per level, retries with backoff, per-channel queues, dead letters."""

import random
from pathlib import Path

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
from voicedrive_receiver.channels.base import DeliveryResult
from voicedrive_receiver.config import parse_config
from voicedrive_receiver.outbox import backoff_delay
from voicedrive_receiver.store import open_sqlite_store

FAIL = DeliveryResult(ok=False, detail="HTTP 503")


def sent(rx: Harness) -> dict[str, list[tuple[str, str]]]:
    return {name: ch.contacts() for name, ch in rx.channels.items() if ch.sent}


async def test_level_1_goes_to_slack_only(rx: Harness) -> None:
    await rx.post(payload(alert(level="1")))
    await rx.drain()
    assert sent(rx) == {"slack": [("emergency_channel", "firing")]}


async def test_level_2_adds_email_to_the_technical_lead(rx: Harness) -> None:
    await rx.post(payload(alert(level="2")))
    await rx.drain()
    assert sent(rx) == {
        "slack": [("emergency_channel", "firing")],
        "email": [("tech_lead", "firing")],
    }


async def test_level_3_adds_sms_to_hotline_and_joint_team(rx: Harness) -> None:
    await rx.post(payload(alert(level="3")))
    await rx.drain()
    assert sorted(rx.channels["sms"].contacts()) == [
        ("hotline", "firing"),
        ("medical_ops", "firing"),
    ]
    assert "phone" not in sent(rx)


async def test_level_4_adds_a_call_and_informs_management(rx: Harness) -> None:
    await rx.post(payload(alert(level="4")))
    await rx.drain()
    assert rx.channels["phone"].contacts() == [("person_in_charge", "firing")]
    assert sorted(rx.channels["email"].contacts()) == [
        ("management", "firing"),
        ("tech_lead", "firing"),
    ]


async def test_group_level_is_the_highest_firing_alert(rx: Harness) -> None:
    await rx.post(payload(alert(fingerprint="a", level="1"), alert(fingerprint="b", level="3")))
    await rx.drain()
    assert rx.channels["sms"].sent[0].level == 3


async def test_recipient_address_is_resolved_but_the_store_keeps_the_contact_key(
    rx: Harness,
) -> None:
    await rx.post(payload(alert(level="3")))
    await rx.drain()
    message = next(m for m in rx.channels["sms"].sent if m.recipient.contact == "hotline")
    assert message.recipient.address.reveal() == "+819000000002"  # type: ignore[union-attr]
    incident = await rx.store.get_incident(message.incident_id)
    assert incident is not None
    assert "+819000000002" not in str(incident.to_json())


async def test_sms_failing_once_is_retried_while_slack_is_not_resent(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    channels = {"sms": RecordingChannel("sms", [FAIL, FAIL])}
    async with harness(config, store, clock, channels=channels) as rx:
        await rx.post(payload(alert(level="3")))
        await rx.drain()
        assert len(rx.channels["slack"].sent) == 1
        assert len(rx.channels["sms"].sent) == 2  # hotline and medical_ops, both failed
        clock.advance(13)  # beyond 10 s backoff + 20 % jitter
        await rx.drain()
        assert len(rx.channels["slack"].sent) == 1
        assert sorted(rx.channels["sms"].contacts()) == [
            ("hotline", "firing"),
            ("hotline", "firing"),
            ("medical_ops", "firing"),
            ("medical_ops", "firing"),
        ]
        clock.advance(600)
        assert await rx.drain() == 0
        deliveries = rx.services.metrics.deliveries
        assert deliveries.labels(channel="sms", outcome="retry")._value.get() == 2
        assert deliveries.labels(channel="sms", outcome="success")._value.get() == 2


async def test_a_retry_waits_for_its_backoff(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(
        config, store, clock, channels={"slack": RecordingChannel("slack", [FAIL])}
    ) as rx:
        await rx.post(payload(alert(level="1")))
        await rx.drain()
        clock.advance(7.9)  # below 10 s - 20 %
        await rx.drain()
        assert len(rx.channels["slack"].sent) == 1
        clock.advance(4.2)
        await rx.drain()
        assert len(rx.channels["slack"].sent) == 2


async def test_throttled_slack_does_not_delay_sms(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    throttled = DeliveryResult(ok=False, detail="HTTP 429", retry_after=3.0)
    channels = {"slack": RecordingChannel("slack", [throttled, throttled, throttled])}
    async with harness(config, store, clock, channels=channels) as rx:
        await rx.post(payload(alert(level="3"), group_key="g1"))
        await rx.drain()
        await rx.post(payload(alert(level="3", fingerprint="z"), group_key="g2"))
        await rx.drain()
        assert len(rx.channels["sms"].sent) == 4  # both groups' SMS at once
        assert len(rx.channels["slack"].sent) == 1  # slack paused after the 429
        assert rx.worker.paused_until("slack") == clock.now().timestamp() + 3.0


async def test_retry_after_is_honoured_and_not_counted_as_an_attempt(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)  # attempts: 3
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    throttled = DeliveryResult(ok=False, detail="HTTP 429", retry_after=3.0)
    channels = {"slack": RecordingChannel("slack", [throttled] * 4)}
    async with harness(config, store, clock, channels=channels) as rx:
        await rx.post(payload(alert(level="1")))
        for _ in range(4):
            await rx.drain()
            clock.advance(2.9)
            await rx.drain()
            clock.advance(0.1)
        await rx.drain()
        assert len(rx.channels["slack"].sent) == 5
        assert rx.services.metrics.dead_letters.labels(channel="slack")._value.get() == 0


async def test_dead_letter_after_the_configured_attempts_is_reported_on_console(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)  # attempts: 3
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(
        config, store, clock, channels={"slack": RecordingChannel("slack", [FAIL] * 5)}
    ) as rx:
        await rx.post(payload(alert(level="1")))
        for _ in range(5):
            await rx.drain()
            clock.advance(600)
        assert len(rx.channels["slack"].sent) == 3
        assert rx.services.metrics.dead_letters.labels(channel="slack")._value.get() == 1
        report = rx.channels["console"].sent
        assert [m.recipient.contact for m in report] == ["operator"]
        assert "slack" in report[0].rendered.text
        assert "配信失敗" in report[0].rendered.text


async def test_permanent_failure_dead_letters_at_once(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    rejected = DeliveryResult(ok=False, detail="HTTP 404 channel_not_found", permanent=True)
    async with harness(
        config, store, clock, channels={"slack": RecordingChannel("slack", [rejected])}
    ) as rx:
        await rx.post(payload(alert(level="1")))
        await rx.drain()
        assert rx.services.metrics.dead_letters.labels(channel="slack")._value.get() == 1


async def test_resolved_goes_to_the_channels_that_got_the_firing_one_but_not_phone(
    rx: Harness,
) -> None:
    await rx.post(payload(alert(level="4")))
    await rx.drain()
    await rx.post(payload(alert(level="4", status="resolved", ends_at="2025-09-01T01:00:00Z")))
    await rx.drain()
    assert rx.channels["phone"].contacts() == [("person_in_charge", "firing")]
    assert rx.channels["slack"].contacts() == [
        ("emergency_channel", "firing"),
        ("emergency_channel", "resolved"),
    ]
    assert sorted(rx.channels["email"].contacts()) == [
        ("management", "firing"),
        ("management", "resolved"),
        ("tech_lead", "firing"),
        ("tech_lead", "resolved"),
    ]


async def test_resolved_for_a_group_never_seen_firing_pages_nobody(rx: Harness) -> None:
    resp = await rx.post(
        payload(alert(status="resolved", level="4", ends_at="2025-09-01T01:00:00Z"))
    )
    await rx.drain()
    assert resp.status == 200
    assert sent(rx) == {}


async def test_resolved_never_overtakes_a_firing_message_still_retrying(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(
        config, store, clock, channels={"slack": RecordingChannel("slack", [FAIL])}
    ) as rx:
        await rx.post(payload(alert(level="1")))
        await rx.drain()
        await rx.post(payload(alert(level="1", status="resolved", ends_at="2025-09-01T01:00:00Z")))
        await rx.drain()
        assert rx.channels["slack"].contacts() == [("emergency_channel", "firing")]
        clock.advance(30)
        await rx.drain()
        assert rx.channels["slack"].contacts() == [
            ("emergency_channel", "firing"),
            ("emergency_channel", "firing"),
            ("emergency_channel", "resolved"),
        ]


async def test_a_restarted_worker_resumes_pending_deliveries(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    db = str(tmp_path / "r.db")
    async with harness(config, await open_sqlite_store(db), clock) as rx:
        await rx.post(payload(alert(level="2")))
        # stopped before the worker ran
    async with harness(config, await open_sqlite_store(db), clock) as again:
        await again.drain()
        assert sent(again) == {
            "slack": [("emergency_channel", "firing")],
            "email": [("tech_lead", "firing")],
        }


async def test_a_lease_held_by_a_crashed_worker_expires_and_the_row_is_sent(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    async with harness(config, store, clock) as rx:
        await rx.post(payload(alert(level="1")))
        now = clock.now().timestamp()
        claimed = await store.claim("slack", now=now, limit=10, lease=60, owner="crashed")
        assert len(claimed) == 1
        await rx.drain()
        assert rx.channels["slack"].sent == []
        clock.advance(61)
        await rx.drain()
        assert len(rx.channels["slack"].sent) == 1


def test_backoff_doubles_up_to_the_cap_within_the_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, base=2.0, maximum=30.0, jitter=0.25, rng=rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        nominal = min(30.0, 2.0 * 2 ** (n - 1))
        assert nominal * 0.75 <= delay <= nominal * 1.25


def test_backoff_without_jitter_is_exact() -> None:
    rng = random.Random(1)
    assert [backoff_delay(n, base=1.0, maximum=5.0, jitter=0.0, rng=rng) for n in (1, 2, 3, 4)] == [
        1.0,
        2.0,
        4.0,
        5.0,
    ]


async def test_part_of_a_group_resolving_does_not_page_again(rx: Harness) -> None:
    await rx.post(payload(alert(fingerprint="a", level="3"), alert(fingerprint="b", level="3")))
    await rx.drain()
    partly = await rx.ingest(
        payload(
            alert(fingerprint="a", level="3"),
            alert(fingerprint="b", level="3", status="resolved", ends_at="2025-09-01T00:10:00Z"),
        )
    )
    await rx.drain()
    assert partly.enqueued == 0
    assert len(rx.channels["sms"].sent) == 2  # hotline and medical_ops, once
    assert len(rx.channels["slack"].sent) == 1
    [incident] = await rx.store.list_incidents()
    assert incident.status == "open"


async def test_an_alert_firing_again_with_a_new_start_pages_again(rx: Harness) -> None:
    await rx.post(payload(alert(level="1")))
    await rx.post(payload(alert(level="1", status="resolved", ends_at="2025-09-01T00:10:00Z")))
    await rx.post(payload(alert(level="1", starts_at="2025-09-01T00:20:00Z")))
    await rx.drain()
    assert rx.channels["slack"].contacts() == [
        ("emergency_channel", "firing"),
        ("emergency_channel", "resolved"),
        ("emergency_channel", "firing"),
    ]


async def test_a_level_4_goes_out_ahead_of_a_throttled_slack_backlog(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)  # outbox concurrency 4: a claim takes 4 rows
    store = await open_sqlite_store(str(tmp_path / "r.db"))
    throttled = DeliveryResult(ok=False, detail="HTTP 429", retry_after=3.0)
    channels = {"slack": RecordingChannel("slack", [throttled])}
    async with harness(config, store, clock, channels=channels) as rx:
        await rx.post(payload(alert(level="1", fingerprint="f0"), group_key="g0"))
        await rx.drain()  # Slack answers 429: paused for 3 s
        for i in range(1, 10):
            await rx.post(payload(alert(level="1", fingerprint=f"f{i}"), group_key=f"g{i}"))
        await rx.post(payload(alert(level="4", fingerprint="urgent"), group_key="urgent"))
        clock.advance(3)
        await rx.worker.run_channel_once("slack")
        slack = rx.channels["slack"].sent
    assert [m.level for m in slack] == [1, 4, 1, 1, 1]


async def test_a_channel_with_send_resolved_false_gets_the_firing_message_only(
    tmp_path: Path, clock: FakeClock
) -> None:
    text = config_text(tmp_path).replace(
        "email: {type: email}", "email: {type: email, send_resolved: false}"
    )
    config = parse_config(parse_yaml(text), channel_types=FAKE_TYPES)
    async with harness(config, await open_sqlite_store(str(tmp_path / "r.db")), clock) as rx:
        await rx.post(payload(alert(level="2")))
        await rx.post(payload(alert(level="2", status="resolved", ends_at="2025-09-01T01:00:00Z")))
        await rx.drain()
        assert rx.channels["email"].contacts() == [("tech_lead", "firing")]
        assert [s for _, s in rx.channels["slack"].contacts()] == ["firing", "resolved"]


def test_send_resolved_defaults_to_false_for_phone_channels_only(tmp_path: Path) -> None:
    channels = make_config(tmp_path).channels
    assert {name: c.send_resolved for name, c in channels.items()}["phone"] is False
    assert all(c.send_resolved for name, c in channels.items() if c.kind != "phone")
