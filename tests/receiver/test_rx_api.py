"""Incident API, health endpoints and /metrics."""

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from rx_helpers import TOKEN, Harness, alert, harness, make_config, payload, require_binary

from voicedrive_common.clock import FakeClock
from voicedrive_receiver.store import open_sqlite_store

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONTRACT_METRICS = {
    "voicedrive_receiver_webhooks_received_total",
    "voicedrive_receiver_alerts_received_total",
    "voicedrive_receiver_level_defaulted_total",
    "voicedrive_receiver_deliveries_total",
    "voicedrive_receiver_delivery_latency_seconds",
    "voicedrive_receiver_outbox_depth",
    "voicedrive_receiver_outbox_oldest_pending_age_seconds",
    "voicedrive_receiver_dead_letters_total",
    "voicedrive_receiver_duplicates_suppressed_total",
    "voicedrive_receiver_incidents_open",
}


async def get_json(rx: Harness, path: str) -> tuple[int, object]:
    resp = await rx.client.get(path, headers=AUTH)
    return resp.status, json.loads(await resp.text())


async def test_incident_list_shows_the_opened_incident(rx: Harness) -> None:
    await rx.post(payload(alert(level="3", component="database")))
    status, body = await get_json(rx, "/api/incidents")
    assert status == 200
    [incident] = body["incidents"]  # type: ignore[index]
    assert incident["level"] == 3
    assert incident["status"] == "open"
    assert incident["component"] == "database"
    assert incident["summary"] == "API応答が遅い"
    assert incident["opened_at"] == "2025-09-01T00:00:00.000Z"


async def test_incident_detail_has_levels_timeline_and_deliveries(rx: Harness) -> None:
    incident_id = (await rx.ingest(payload(alert(level="2")))).incident_id
    rx.clock.advance(60)
    await rx.post(payload(alert(level="2"), alert(fingerprint="b", level="3")))
    await rx.drain()
    status, body = await get_json(rx, f"/api/incidents/{incident_id}")
    assert status == 200
    assert body["level"] == 3  # type: ignore[index]
    assert [(h["from_level"], h["to_level"]) for h in body["level_history"]] == [  # type: ignore[index]
        (None, 2),
        (2, 3),
    ]
    kinds = [e["kind"] for e in body["timeline"]]  # type: ignore[index]
    assert kinds[:2] == ["opened", "level_raised"]
    assert "delivered" in kinds
    assert {d["channel"] for d in body["deliveries"]} == {"slack", "email", "sms"}  # type: ignore[index]


async def test_resolved_payload_resolves_the_incident(rx: Harness) -> None:
    await rx.post(payload(alert()))
    rx.clock.advance(300)
    await rx.post(payload(alert(status="resolved", ends_at="2025-09-01T00:05:00Z")))
    _, body = await get_json(rx, "/api/incidents")
    [incident] = body["incidents"]  # type: ignore[index]
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] == "2025-09-01T00:05:00.000Z"


async def test_firing_again_soon_after_resolution_reopens_the_same_incident(rx: Harness) -> None:
    await rx.post(payload(alert()))
    await rx.post(payload(alert(status="resolved", ends_at="2025-09-01T00:05:00Z")))
    rx.clock.advance(29 * 60)
    await rx.post(payload(alert(starts_at="2025-09-01T00:29:00Z")))
    _, body = await get_json(rx, "/api/incidents")
    assert [i["status"] for i in body["incidents"]] == ["open"]  # type: ignore[index]


async def test_firing_long_after_resolution_opens_a_new_incident(rx: Harness) -> None:
    await rx.post(payload(alert()))
    await rx.post(payload(alert(status="resolved", ends_at="2025-09-01T00:05:00Z")))
    rx.clock.advance(31 * 60)
    await rx.post(payload(alert(starts_at="2025-09-01T00:31:00Z")))
    _, body = await get_json(rx, "/api/incidents")
    assert [i["status"] for i in body["incidents"]] == ["open", "closed"]  # type: ignore[index]


async def test_a_repeat_with_a_lower_level_never_lowers_the_incident(rx: Harness) -> None:
    await rx.post(payload(alert(level="3")))
    await rx.post(payload(alert(level="3"), alert(fingerprint="x", level="1")))
    _, body = await get_json(rx, "/api/incidents")
    assert body["incidents"][0]["level"] == 3  # type: ignore[index]


async def test_unknown_incident_is_404(rx: Harness) -> None:
    status, body = await get_json(rx, "/api/incidents/INC-nope")
    assert status == 404
    assert "INC-nope" in body["error"]  # type: ignore[index]


async def test_incident_api_needs_the_credentials(rx: Harness) -> None:
    resp = await rx.client.get("/api/incidents")
    assert resp.status == 401


async def test_incident_list_rejects_a_bad_status_filter(rx: Harness) -> None:
    status, body = await get_json(rx, "/api/incidents?status=sleeping")
    assert status == 400
    assert body["field"] == "status"  # type: ignore[index]


async def test_health_and_readiness_answer_ok(rx: Harness) -> None:
    healthy = await rx.client.get("/-/healthy")
    ready = await rx.client.get("/-/ready")
    assert (healthy.status, ready.status) == (200, 200)


async def test_metrics_carry_the_contract_names(rx: Harness) -> None:
    await rx.post(payload(alert(level="2")))
    await rx.drain()
    await rx.worker.refresh_snapshot()
    text = await (await rx.client.get("/metrics")).text()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert names >= CONTRACT_METRICS
    assert 'voicedrive_receiver_alerts_received_total{level="2",status="firing"} 1.0' in text
    assert 'voicedrive_receiver_deliveries_total{channel="email",outcome="success"} 1.0' in text
    assert 'voicedrive_receiver_incidents_open{level="2"} 1.0' in text


async def test_defaulted_levels_are_counted(rx: Harness) -> None:
    await rx.post(payload(alert()))  # no level label, no rule matches
    text = await (await rx.client.get("/metrics")).text()
    assert "voicedrive_receiver_level_defaulted_total 1.0" in text


async def test_outbox_gauges_show_pending_work(rx: Harness) -> None:
    await rx.post(payload(alert(level="2")))
    rx.clock.advance(42)
    await rx.worker.refresh_snapshot()
    text = await (await rx.client.get("/metrics")).text()
    assert 'voicedrive_receiver_outbox_depth{channel="email"} 1.0' in text
    assert 'voicedrive_receiver_outbox_oldest_pending_age_seconds{channel="email"} 42.0' in text


async def test_promtool_check_metrics_is_clean(rx: Harness, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    await rx.post(payload(alert(level="4")))
    await rx.drain()
    await rx.worker.refresh_snapshot()
    text = await (await rx.client.get("/metrics")).text()
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), timeout=30)
    assert proc.returncode == 0, (out + err).decode()
    assert (out + err).decode().strip() == ""


async def test_metrics_behind_the_webhook_credentials_when_configured(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    config = replace(config, server=replace(config.server, metrics_auth="same"))
    async with harness(config, await open_sqlite_store(str(tmp_path / "m.db")), clock) as rx:
        refused = await rx.client.get("/metrics")
        healthy_refused = await rx.client.get("/-/healthy")
        allowed = await rx.client.get("/metrics", headers=AUTH)
        assert (refused.status, healthy_refused.status, allowed.status) == (401, 401, 200)
