"""The lifecycle wired into the receiver: scheduler, API, store, metrics (FakeClock, no sleeps)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import rx_helpers
from aiohttp import web
from aiohttp.test_utils import TestServer
from rx_helpers import (
    FAKE_TYPES,
    TOKEN,
    Harness,
    alert,
    config_text,
    harness,
    make_config,
    payload,
)

from voicedrive_common.clock import FakeClock
from voicedrive_common.confload import parse_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.config import ReceiverConfig, parse_config
from voicedrive_receiver.lifecycle.api import LIFECYCLE, LifecycleServices
from voicedrive_receiver.lifecycle.persistence import load_incident
from voicedrive_receiver.rendering import render
from voicedrive_receiver.store import open_postgres_store, open_sqlite_store
from voicedrive_receiver.store.base import Connection

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEDULE = str(Path(__file__).resolve().parents[3] / "alertmanager" / "schedule.phase2.yml")
LIFECYCLE_CONFIG = f"""
lifecycle:
  schedule_file: {SCHEDULE}
  escalation:
    top_widen: [[management]]
  watchdog:
    max_age: 5m
    page: [{{channel: sms, to: [hotline]}}]
"""


def life(h: Harness) -> LifecycleServices:
    services: LifecycleServices = h.client.server.app[LIFECYCLE]
    return services


@pytest.fixture
async def rxl(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    """The receiver with the lifecycle section, on a fresh SQLite file."""
    config = make_config(tmp_path, extra=LIFECYCLE_CONFIG)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(config, store, clock) as h:
        yield h


async def open_level2(h: Harness) -> str:
    incident_id = (await h.ingest(payload(alert()))).incident_id
    assert incident_id is not None
    await h.drain()
    return incident_id


async def incident(h: Harness, incident_id: str) -> dict[str, Any]:
    resp = await h.client.get(f"/api/incidents/{incident_id}", headers=AUTH)
    assert resp.status == 200
    data: dict[str, Any] = await resp.json()
    return data


def sms_contacts(h: Harness) -> list[str]:
    return [m.recipient.contact for m in h.channels["sms"].sent]


async def test_unacknowledged_level2_escalates_to_level3_at_exactly_30_minutes(
    rxl: Harness,
) -> None:
    incident_id = await open_level2(rxl)
    rxl.clock.advance(29 * 60 + 59)
    await life(rxl).scheduler.run_once()
    assert (await incident(rxl, incident_id))["level"] == 2
    rxl.clock.advance(1)
    await life(rxl).scheduler.run_once()
    await rxl.drain()
    found = await incident(rxl, incident_id)
    assert found["level"] == 3
    assert [lv["reason"] for lv in found["level_history"]] == ["opened", "escalated"]
    assert sorted(sms_contacts(rxl)) == ["hotline", "medical_ops"]
    assert "エスカレーション Level 2→3" in rxl.channels["sms"].sent[0].rendered.text


async def test_resolution_reaches_everyone_the_escalation_paged_exactly_once(
    rxl: Harness,
) -> None:
    await open_level2(rxl)
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    await rxl.drain()
    resolved = alert(status="resolved", ends_at="2025-09-01T09:40:00+09:00")
    assert (await rxl.post(payload(resolved))).status == 200
    await rxl.drain()
    sms = [(m.recipient.contact, m.status) for m in rxl.channels["sms"].sent]
    assert sorted(c for c, status in sms if status == "resolved") == ["hotline", "medical_ops"]


async def test_escalation_is_counted_in_metrics(rxl: Harness) -> None:
    await open_level2(rxl)
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    text = await (await rxl.client.get("/metrics")).text()
    assert 'voicedrive_receiver_escalations_total{from_level="2",to_level="3"} 1.0' in text


async def test_acknowledgement_by_api_before_30_minutes_prevents_escalation(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    rxl.clock.advance(29 * 60)
    resp = await rxl.client.post(
        f"/api/incidents/{incident_id}/ack", json={"by": "yamada"}, headers=AUTH
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["acknowledged_by"]) == ("acknowledged", "yamada")
    rxl.clock.advance(3600)
    await life(rxl).scheduler.run_once()
    await rxl.drain()
    assert (await incident(rxl, incident_id))["level"] == 2
    assert sms_contacts(rxl) == []


async def test_escalated_incident_keeps_its_level_when_a_level2_alert_joins(
    rxl: Harness,
) -> None:
    incident_id = await open_level2(rxl)
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    second = alert(fingerprint="fp2", starts_at="2025-09-01T09:31:00+09:00")
    assert (await rxl.ingest(payload(alert(), second))).incident_id == incident_id
    assert (await incident(rxl, incident_id))["level"] == 3
    rxl.clock.advance(29 * 60)
    await life(rxl).scheduler.run_once()
    assert (await incident(rxl, incident_id))["level"] == 3
    rxl.clock.advance(60)
    await life(rxl).scheduler.run_once()
    assert (await incident(rxl, incident_id))["level"] == 4


async def test_acknowledgement_is_measured_once(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    rxl.clock.advance(600)
    await rxl.client.post(f"/api/incidents/{incident_id}/ack", json={"by": "sato"}, headers=AUTH)
    await life(rxl).scheduler.run_once()
    await life(rxl).scheduler.run_once()
    text = await (await rxl.client.get("/metrics")).text()
    assert 'voicedrive_receiver_time_to_acknowledge_seconds_count{level="2"} 1.0' in text
    assert 'voicedrive_receiver_time_to_acknowledge_seconds_sum{level="2"} 600.0' in text


async def test_ack_needs_credentials_a_name_and_a_known_incident(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    url = f"/api/incidents/{incident_id}/ack"
    assert (await rxl.client.post(url, json={"by": "x"})).status == 401
    missing = await rxl.client.post(url, json={}, headers=AUTH)
    assert missing.status == 400
    assert (await missing.json())["field"] == "by"
    unknown = await rxl.client.post("/api/incidents/INC-x/ack", json={"by": "x"}, headers=AUTH)
    assert unknown.status == 404


async def test_first_response_breach_is_recorded_on_the_incident_and_counted(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    rxl.clock.advance(15 * 60)
    await life(rxl).scheduler.run_once()
    found = await incident(rxl, incident_id)
    breaches = [e["detail"] for e in found["timeline"] if e["kind"] == "sla_breach"]
    assert breaches == [{"kind": "first_response", "level": 2}]
    text = await (await rxl.client.get("/metrics")).text()
    assert 'voicedrive_receiver_sla_breaches_total{kind="first_response",level="2"} 1.0' in text


async def test_refire_during_monitoring_reopens_and_after_it_opens_a_new_incident(
    rxl: Harness,
) -> None:
    first = await open_level2(rxl)
    resolved = alert(status="resolved", ends_at="2025-09-01T09:05:00+09:00")
    await rxl.post(payload(resolved))
    rxl.clock.advance(29 * 60)
    again = await rxl.ingest(payload(alert(starts_at="2025-09-01T09:29:00+09:00")))
    assert again.incident_id == first
    await rxl.post(
        payload(
            alert(
                status="resolved",
                starts_at="2025-09-01T09:29:00+09:00",
                ends_at="2025-09-01T09:30:00+09:00",
            )
        )
    )
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    assert (await incident(rxl, first))["status"] == "closed"
    rxl.clock.advance(60)
    later = await rxl.ingest(payload(alert(starts_at="2025-09-01T10:00:00+09:00")))
    assert later.incident_id != first


async def test_record_markdown_follows_the_protocol_template(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    await rxl.drain()
    await rxl.client.post(f"/api/incidents/{incident_id}/ack", json={"by": "山田"}, headers=AUTH)
    patched = await rxl.client.patch(
        f"/api/incidents/{incident_id}/record",
        json={"root_cause": "接続プール枯渇", "prevention": "監視追加", "by": "山田"},
        headers=AUTH,
    )
    assert patched.status == 200
    rxl.clock.advance(600)
    await rxl.client.post(
        f"/api/incidents/{incident_id}/resolve", json={"by": "山田"}, headers=AUTH
    )
    resp = await rxl.client.get(f"/api/incidents/{incident_id}/record.md", headers=AUTH)
    assert resp.status == 200
    assert resp.content_type == "text/markdown"
    text = await resp.text()
    assert text.startswith("# Phase 2緊急事態対応記録\n")
    assert "- 発生日時: 2025-09-01 09:00:00 (月) JST" in text
    assert "- 問題レベル: Level 3（重大な問題）" in text
    assert "- 対応者: 山田" in text
    assert "- 解決時刻: 2025-09-01 09:40:00 (月) JST" in text
    assert "- 対応時間: 40分（発生から解決まで）" in text
    assert "- 根本原因: 接続プール枯渇" in text
    assert "Level 2 → Level 3 にエスカレーション" in text
    assert "sms → hotline に通知" in text
    english = await rxl.client.get(f"/api/incidents/{incident_id}/record.md?lang=en", headers=AUTH)
    assert (await english.text()).startswith("# Phase 2 emergency response record\n")


async def test_record_occurred_at_is_the_earliest_alert_start_not_the_receipt(
    rxl: Harness,
) -> None:
    incident_id = (
        await rxl.ingest(payload(alert(starts_at="2025-09-01T08:55:00+09:00")))
    ).incident_id
    record = await rxl.client.get(f"/api/incidents/{incident_id}/record.md", headers=AUTH)
    text = await record.text()
    assert "- 発生日時: 2025-09-01 08:55:00 (月) JST\n" in text
    assert "- 受信日時: 2025-09-01 09:00:00 (月) JST\n" in text


async def test_record_update_with_unknown_field_is_a_400_naming_it(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    resp = await rxl.client.patch(
        f"/api/incidents/{incident_id}/record", json={"cause": "x"}, headers=AUTH
    )
    assert resp.status == 400
    assert (await resp.json())["field"] == "cause"


DEEP = b'{"by": ' + b"[" * 5000 + b"]" * 5000 + b"}"


async def test_deeply_nested_ack_body_is_a_400_saying_so(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    resp = await rxl.client.post(f"/api/incidents/{incident_id}/ack", data=DEEP, headers=AUTH)
    assert resp.status == 400
    assert "nested too deeply" in (await resp.json())["error"]


async def test_deeply_nested_record_update_is_a_400_saying_so(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    resp = await rxl.client.patch(f"/api/incidents/{incident_id}/record", data=DEEP, headers=AUTH)
    assert resp.status == 400
    assert "nested too deeply" in (await resp.json())["error"]


async def test_ack_body_that_is_not_utf8_is_a_400(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    resp = await rxl.client.post(
        f"/api/incidents/{incident_id}/ack", data=b'{"by": "\xff"}', headers=AUTH
    )
    assert resp.status == 400
    assert "not UTF-8" in (await resp.json())["error"]


async def test_level4_repages_with_the_widened_audience(rxl: Harness) -> None:
    await rxl.post(payload(alert(level="4")))
    await rxl.drain()
    before = len(rxl.channels["email"].sent)
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    await rxl.drain()
    repaged = rxl.channels["phone"].sent[-1]
    assert "再呼び出し 第1回" in repaged.rendered.text
    assert [m.recipient.contact for m in rxl.channels["email"].sent[before:]].count(
        "management"
    ) == 1


async def test_resolution_after_a_repage_mails_each_recipient_once_and_calls_no_one(
    rxl: Harness,
) -> None:
    await rxl.post(payload(alert(level="4")))
    await rxl.drain()
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    await rxl.drain()
    resolved = alert(level="4", status="resolved", ends_at="2025-09-01T09:40:00+09:00")
    assert (await rxl.post(payload(resolved))).status == 200
    await rxl.drain()
    emails = [m.recipient.contact for m in rxl.channels["email"].sent if m.status == "resolved"]
    assert sorted(emails) == ["management", "tech_lead"]
    assert [m for m in rxl.channels["phone"].sent if m.status == "resolved"] == []


async def test_watchdog_heartbeat_is_recorded_and_its_silence_pages_once(rxl: Harness) -> None:
    resp = await rxl.client.post("/webhook/watchdog", json=payload(), headers=AUTH)
    assert resp.status == 200
    text = await (await rxl.client.get("/metrics")).text()
    assert "voicedrive_receiver_watchdog_last_seen_timestamp_seconds 1.7566848e+09" in text
    rxl.clock.advance(5 * 60)
    assert not await life(rxl).scheduler.check_watchdog(rxl.clock.now())
    rxl.clock.advance(1)
    assert await life(rxl).scheduler.check_watchdog(rxl.clock.now())
    rxl.clock.advance(60)
    assert not await life(rxl).scheduler.check_watchdog(rxl.clock.now())
    await rxl.drain()
    assert sms_contacts(rxl) == ["hotline"]
    assert "Watchdog" in rxl.channels["sms"].sent[0].rendered.text


async def test_watchdog_needs_credentials(rxl: Harness) -> None:
    assert (await rxl.client.post("/webhook/watchdog", json={})).status == 401


async def test_daily_check_reports_the_five_items_from_live_data(rxl: Harness) -> None:
    await rxl.client.post("/webhook/watchdog", json={}, headers=AUTH)
    await open_level2(rxl)
    resp = await rxl.client.get("/api/daily-check", headers=AUTH)
    assert resp.status == 200
    data = await resp.json()
    items = {i["key"]: i for i in data["items"]}
    assert list(items) == ["duty", "monitoring", "channels", "backup", "review"]
    assert items["monitoring"]["ok"] is True
    # 2025-09-01: the schedule leaves 12:00-13:00 and 17:00-18:00 uncovered.
    assert items["duty"]["data"]["gaps"] == [
        "2025-09-01 (月) 12:00-13:00",
        "2025-09-01 (月) 17:00-18:00",
    ]
    channels = {c["name"]: c["ok"] for c in items["channels"]["data"]["channels"]}
    assert channels["slack"] is True
    assert channels["phone"] is False
    assert items["backup"]["ok"] is False


async def test_daily_check_as_markdown(rxl: Harness) -> None:
    resp = await rxl.client.get("/api/daily-check?format=markdown", headers=AUTH)
    assert resp.content_type == "text/markdown"
    assert (await resp.text()).startswith("# Phase 2 日次チェック 2025-09-01 (月)")


async def test_timers_survive_a_receiver_restart(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, extra=LIFECYCLE_CONFIG)
    path = str(tmp_path / "receiver.db")
    async with harness(config, await open_sqlite_store(path), clock) as first:
        incident_id = await open_level2(first)
    clock.advance(31 * 60)
    async with harness(config, await open_sqlite_store(path), clock) as second:
        await life(second).scheduler.run_once()
        assert (await incident(second, incident_id))["level"] == 3


@pytest.mark.integration
async def test_two_replicas_on_postgres_escalate_once(
    tmp_path: Path, clock: FakeClock, postgres: ThrowawayPostgres
) -> None:
    dsn = postgres.create_database(f"rxl_{uuid.uuid4().hex[:10]}")
    config_a = make_config(tmp_path, store=f"postgres: {{dsn: '{dsn}'}}", extra=LIFECYCLE_CONFIG)
    config_b = make_config(tmp_path, store=f"postgres: {{dsn: '{dsn}'}}", extra=LIFECYCLE_CONFIG)
    async with (
        harness(config_a, await open_postgres_store(dsn), clock) as a,
        harness(config_b, await open_postgres_store(dsn), clock) as b,
    ):
        incident_id = await open_level2(a)
        clock.advance(30 * 60)
        results = await asyncio.gather(*(life(h).scheduler.run_once() for h in (a, b, a, b)))
        actions = [act for passes in results for applied in passes for act in applied.actions]
        assert len(actions) == 1
        await a.drain()
        await b.drain()
        assert sorted(sms_contacts(a) + sms_contacts(b)) == ["hotline", "medical_ops"]
        found = await incident(b, incident_id)
        assert [lv["reason"] for lv in found["level_history"]] == ["opened", "escalated"]


def test_config_text_with_lifecycle_section_parses(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra=LIFECYCLE_CONFIG)
    assert config.lifecycle.schedule is not None
    assert config.lifecycle.escalation.monitoring.total_seconds() == 1800


def test_unknown_contact_in_schedule_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    schedule = tmp_path / "s.yml"
    schedule.write_text(
        'fallback: {contacts: [nobody]}\nshifts: [{date: 2025-09-01, start: "08:00",'
        ' end: "12:00", team: voicedrive, contacts: [hotline]}]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"lifecycle\.schedule_file: .*unknown contact 'nobody'"):
        make_config(tmp_path, extra=f"lifecycle: {{schedule_file: {schedule}}}\n")


def on_duty_config(tmp_path: Path) -> ReceiverConfig:
    text = config_text(tmp_path, extra=LIFECYCLE_CONFIG).replace(
        "{level: 3, channel: sms, to: [hotline, team:medical]}",
        "{level: 3, channel: sms, to: [on_duty]}",
    )
    assert "to: [on_duty]" in text
    return parse_config(parse_yaml(text), channel_types=FAKE_TYPES)


async def test_sms_goes_to_whoever_is_on_duty(tmp_path: Path, clock: FakeClock) -> None:
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(on_duty_config(tmp_path), store, clock) as h:
        # 2025-09-01 09:00 JST: the infrastructure team is on site (08:00-12:00).
        await h.post(payload(alert(level="3")))
        await h.drain()
        assert sms_contacts(h) == ["infra_engineer"]
        assert "当番不在" not in h.channels["sms"].sent[0].rendered.text


async def test_sms_in_an_uncovered_hour_goes_to_the_fallback_and_says_so(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(on_duty_config(tmp_path), store, clock) as h:
        clock.advance(3.5 * 3600)  # 12:30 JST: the lunch hour nobody is named for
        await h.post(payload(alert(level="3", starts_at="2025-09-01T12:30:00+09:00")))
        await h.drain()
        assert sms_contacts(h) == ["hotline"]
        assert "［当番不在: 代替連絡先に送信］" in h.channels["sms"].sent[0].rendered.text


def medical_email_config(tmp_path: Path) -> ReceiverConfig:
    text = config_text(tmp_path, extra=LIFECYCLE_CONFIG).replace(
        "{level: 2, channel: email, to: [tech_lead]}",
        "{level: 2, channel: email, to: [tech_lead, team:medical]}",
    )
    assert "team:medical]}" in text
    return parse_config(parse_yaml(text), channel_types=FAKE_TYPES)


def email_contacts(h: Harness) -> list[str]:
    return [m.recipient.contact for m in h.channels["email"].sent]


async def test_level2_for_the_medical_team_after_hours_is_held_and_sent_as_one_digest(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(medical_email_config(tmp_path), store, clock) as h:
        clock.advance(9 * 3600)  # Monday 2025-09-01 18:00:00 JST: business hours are over
        first = await h.ingest(payload(alert(starts_at="2025-09-01T18:00:00+09:00")))
        clock.advance(2 * 3600)
        other = alert(
            fingerprint="fp2", component="notifications", starts_at="2025-09-01T20:00:00+09:00"
        )
        second = await h.ingest(payload(other, group_key='{}:{component="notifications"}'))
        # Acknowledged by VoiceDrive at once, so nothing escalates overnight.
        for processed in (first, second):
            ack = f"/api/incidents/{processed.incident_id}/ack"
            assert (await h.client.post(ack, json={"by": "sato"}, headers=AUTH)).status == 200
        await h.drain()
        assert email_contacts(h) == ["tech_lead", "tech_lead"]
        # Tuesday 07:59:59 is still outside; 08:00:00 is the next business start.
        clock.set(datetime.fromisoformat("2025-09-02T07:59:59+09:00"))
        await life(h).scheduler.run_once()
        await h.drain()
        assert email_contacts(h) == ["tech_lead", "tech_lead"]
        clock.advance(1)
        await life(h).scheduler.run_once()
        await life(h).scheduler.run_once()
        await h.drain()
        assert email_contacts(h) == ["tech_lead", "tech_lead", "medical_ops"]
        digest = h.channels["email"].sent[-1].rendered
        assert digest.subject == "営業時間外に保留した通知（2件）"
        assert digest.text.count("[Level 2]") == 2


async def test_level3_for_the_medical_team_after_hours_goes_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(medical_email_config(tmp_path), store, clock) as h:
        clock.advance(10 * 3600)  # 19:00 JST
        await h.post(payload(alert(level="3", starts_at="2025-09-01T19:00:00+09:00")))
        await h.drain()
        assert "medical_ops" in email_contacts(h)
        assert "medical_ops" in sms_contacts(h)


async def test_test_messages_reach_every_channel_and_the_daily_check_sees_them(
    rxl: Harness,
) -> None:
    resp = await rxl.client.post("/api/daily-check/test-messages", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["channels"] == ["console", "email", "phone", "slack", "sms"]
    await rxl.drain()
    assert "疎通確認" in rxl.channels["phone"].sent[0].rendered.text
    check = await (await rxl.client.get("/api/daily-check", headers=AUTH)).json()
    (channels,) = [i for i in check["items"] if i["key"] == "channels"]
    assert channels["ok"] is True


async def test_acknowledging_a_closed_incident_is_a_409(rxl: Harness) -> None:
    incident_id = await open_level2(rxl)
    await rxl.client.post(f"/api/incidents/{incident_id}/resolve", json={"by": "x"}, headers=AUTH)
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()
    resp = await rxl.client.post(
        f"/api/incidents/{incident_id}/ack", json={"by": "late"}, headers=AUTH
    )
    assert resp.status == 409
    assert "closed" in (await resp.json())["error"]


async def test_daily_check_reads_the_backup_age_from_the_prometheus_api(
    tmp_path: Path, clock: FakeClock
) -> None:
    queries: list[str] = []

    async def query(request: web.Request) -> web.Response:
        queries.append(request.query["query"])
        return web.json_response(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "7200"]}]},
            }
        )

    prom_app = web.Application()
    prom_app.router.add_get("/api/v1/query", query)
    server = TestServer(prom_app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        extra = (
            LIFECYCLE_CONFIG
            + f"  daily_check: {{prometheus_url: 'http://127.0.0.1:{server.port}'}}\n"
        )
        config = make_config(tmp_path, extra=extra)
        store = await open_sqlite_store(str(tmp_path / "receiver.db"))
        async with harness(config, store, clock) as h:
            data = await (await h.client.get("/api/daily-check", headers=AUTH)).json()
    finally:
        await server.close()
    (backup,) = [i for i in data["items"] if i["key"] == "backup"]
    assert backup["ok"] is True
    assert backup["data"]["age_seconds"] == 7200.0
    assert queries == ["max(voicedrive_backup_age_seconds)"]


async def test_a_scheduler_read_rebuilds_the_same_lifecycle_without_the_delivery_events(
    rxl: Harness,
) -> None:
    incident_id = (await rxl.ingest(payload(alert(level="4")))).incident_id
    await rxl.drain()
    rxl.clock.advance(30 * 60)
    await life(rxl).scheduler.run_once()  # a re-page: one of the events a decision needs
    await rxl.drain()

    async def both(conn: Connection) -> tuple[Any, Any]:
        return (
            await load_incident(conn, incident_id),
            await load_incident(conn, incident_id, timeline=False),
        )

    full, lean = await rxl.store.db.run(both)
    assert full is not None
    assert lean is not None
    assert lean.lifecycle == full.lifecycle
    assert lean.lifecycle.repages == 1
    assert {e["kind"] for e in lean.events} == {"repaged"}
    assert "delivered" in {e["kind"] for e in full.events}


async def test_escalation_message_states_a_wait_under_a_minute_in_seconds(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    descriptions: list[str] = []
    plain = rx_helpers.plain_render

    def recording_render(
        kind: str, status: str, language: str, context: Mapping[str, Any]
    ) -> RenderedMessage:
        descriptions.append(str(context.get("description", "")))
        return plain(kind, status, language, context)

    monkeypatch.setattr(rx_helpers, "plain_render", recording_render)
    extra = LIFECYCLE_CONFIG.replace(
        "  escalation:\n", "  escalation:\n    levels: {2: {escalate_after: 45s}}\n"
    )
    config = make_config(tmp_path, extra=extra)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(config, store, clock) as h:
        await open_level2(h)
        h.clock.advance(45)
        await life(h).scheduler.run_once()
        await h.drain()
    assert any(d.startswith("45秒以内に確認されなかったため Level 3") for d in descriptions)


def rendering_for_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness renders with the built-in templates instead of its plain texts."""
    monkeypatch.setattr(rx_helpers, "plain_render", render)


def deadlines_config(tmp_path: Path) -> ReceiverConfig:
    extra = LIFECYCLE_CONFIG.replace(
        "  escalation:\n",
        "  escalation:\n    levels: {2: {response_deadline: 45m}, 3: {response_deadline: 20m}}\n",
    )
    return make_config(tmp_path, extra=extra)


async def test_pages_state_the_configured_response_deadline_of_the_level(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendering_for_real(monkeypatch)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(deadlines_config(tmp_path), store, clock) as h:
        await open_level2(h)
        (mail,) = h.channels["email"].sent
        (slack,) = h.channels["slack"].sent
    assert "対応期限: 検知から45分以内" in mail.rendered.text
    assert "対応期限: 45分以内" in slack.rendered.text
    assert "2時間以内" not in mail.rendered.text + slack.rendered.text


async def test_escalation_page_states_the_configured_deadline_of_the_new_level(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendering_for_real(monkeypatch)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(deadlines_config(tmp_path), store, clock) as h:
        incident_id = await open_level2(h)
        h.clock.advance(30 * 60)
        await life(h).scheduler.run_once()
        await h.drain()
        sms = [m.rendered.text for m in h.channels["sms"].sent]
        found = await incident(h, incident_id)
    assert found["level"] == 3
    assert sms
    assert all("20分以内に対応" in text for text in sms)
    assert not any("1時間以内" in text for text in sms)


async def hold_overnight_and_release(h: Harness) -> str:
    """A Level 2 page for the medical team at 18:00 Monday, released Tuesday 08:00."""
    h.clock.advance(9 * 3600)  # Monday 2025-09-01 18:00:00 JST: business hours are over
    incident_id = (
        await h.ingest(payload(alert(starts_at="2025-09-01T18:00:00+09:00")))
    ).incident_id
    assert incident_id is not None
    ack = f"/api/incidents/{incident_id}/ack"
    assert (await h.client.post(ack, json={"by": "sato"}, headers=AUTH)).status == 200
    await h.drain()
    h.clock.set(datetime.fromisoformat("2025-09-02T08:00:00+09:00"))
    await life(h).scheduler.run_once()
    await h.drain()
    return incident_id


def held_events(found: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (e["kind"], e["at"], e["detail"])
        for e in found["timeline"]
        if e["kind"] in ("held", "digested")
    ]


async def test_held_page_and_its_digest_appear_in_the_incident_timeline(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(medical_email_config(tmp_path), store, clock) as h:
        incident_id = await hold_overnight_and_release(h)
        found = await incident(h, incident_id)
    assert held_events(found) == [
        (
            "held",
            "2025-09-01T09:00:00.000Z",
            {
                "channel": "email",
                "contact": "medical_ops",
                "level": 2,
                "status": "firing",
                "release_at": "2025-09-01T23:00:00.000Z",
            },
        ),
        (
            "digested",
            "2025-09-01T23:00:00.000Z",
            {
                "channel": "email",
                "contact": "medical_ops",
                "level": 2,
                "digest": "digest:medical:2025-09-02T08:00",
            },
        ),
    ]


async def test_a_replayed_notification_adds_no_second_held_event(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(medical_email_config(tmp_path), store, clock) as h:
        clock.advance(9 * 3600)
        body = payload(alert(starts_at="2025-09-01T18:00:00+09:00"))
        incident_id = (await h.ingest(body)).incident_id
        assert incident_id is not None
        await h.post(body)
        found = await incident(h, incident_id)
    assert [kind for kind, _, _ in held_events(found)] == ["held"]


async def test_record_shows_the_held_page_with_its_release_and_the_digest(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(medical_email_config(tmp_path), store, clock) as h:
        incident_id = await hold_overnight_and_release(h)
        url = f"/api/incidents/{incident_id}/record.md"
        ja = await (await h.client.get(url, headers=AUTH)).text()
        en = await (await h.client.get(f"{url}?lang=en", headers=AUTH)).text()
    assert (
        "  - 2025-09-01 18:00:00 (月) JST 営業時間外のため保留: email → medical_ops"
        "（2025-09-02 08:00:00 (火) JST の営業開始時にまとめて送信）\n"
    ) in ja
    assert (
        "  - 2025-09-02 08:00:00 (火) JST 保留した通知を営業開始のまとめ通知で送信:"
        " email → medical_ops\n"
    ) in ja
    assert (
        "  - 2025-09-01 18:00:00 (Mon) JST Held for business hours: email → medical_ops"
        " (to go out in the digest at 2025-09-02 08:00:00 (Tue) JST)\n"
    ) in en
    assert (
        "  - 2025-09-02 08:00:00 (Tue) JST Held message sent in the business-hours digest"
        " via email → medical_ops\n"
    ) in en


@pytest.mark.integration
async def test_held_and_digested_events_on_postgres(
    tmp_path: Path, clock: FakeClock, postgres: ThrowawayPostgres
) -> None:
    dsn = postgres.create_database(f"rxl_{uuid.uuid4().hex[:10]}")
    text = config_text(tmp_path, store=f"postgres: {{dsn: '{dsn}'}}", extra=LIFECYCLE_CONFIG)
    text = text.replace(
        "{level: 2, channel: email, to: [tech_lead]}",
        "{level: 2, channel: email, to: [tech_lead, team:medical]}",
    )
    config = parse_config(parse_yaml(text), channel_types=FAKE_TYPES)
    async with harness(config, await open_postgres_store(dsn), clock) as h:
        incident_id = await hold_overnight_and_release(h)
        found = await incident(h, incident_id)
    assert [(kind, at) for kind, at, _ in held_events(found)] == [
        ("held", "2025-09-01T09:00:00.000Z"),
        ("digested", "2025-09-01T23:00:00.000Z"),
    ]
