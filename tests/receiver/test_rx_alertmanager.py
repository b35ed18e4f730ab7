"""The real Alertmanager posting to the receiver: its payloads parse, and two Alertmanagers
sending the same group (different externalURL) page once."""

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from rx_helpers import TOKEN, Harness, require_binary

from voicedrive_common.throwaway_pg import free_port

pytestmark = pytest.mark.integration


def am_config(receiver_url: str, token_file: Path) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "voicedrive",
            "group_by": ["alertname", "system"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "voicedrive",
                "webhook_configs": [
                    {
                        "url": f"{receiver_url}/webhook",
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
                        },
                    }
                ],
            }
        ],
    }


def _start(tmp_path: Path, name: str, receiver_url: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = require_binary("prometheus-alertmanager")
    work = tmp_path / name
    work.mkdir()
    token = work / "token"
    token.write_text(TOKEN)
    config = work / "alertmanager.yml"
    config.write_text(yaml.safe_dump(am_config(receiver_url, token)))
    port = free_port()
    with open(work / "am.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://{name}.example:9093",
                # Empty disables clustering: these two are independent, like two sites.
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@asynccontextmanager
async def alertmanager(
    session: aiohttp.ClientSession, tmp_path: Path, name: str, receiver_url: str
) -> AsyncIterator[str]:
    """A real, unclustered Alertmanager; yields its API base URL once ready."""
    proc, url = _start(tmp_path, name, receiver_url)
    try:
        async with asyncio.timeout(15):
            while True:
                with suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
        yield url
    finally:
        _stop(proc)


async def post_alert(session: aiohttp.ClientSession, am_url: str, alert: dict[str, Any]) -> None:
    async with session.post(f"{am_url}/api/v2/alerts", json=[alert]) as resp:
        assert resp.status == 200


async def test_two_alertmanagers_sending_the_same_alert_page_once(
    rx: Harness, tmp_path: Path
) -> None:
    receiver_url = str(rx.client.make_url("")).rstrip("/")
    # Real Alertmanagers stamp real times; the receiver checks them against its clock.
    rx.clock.set(datetime.now(UTC))
    started = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    alert = {
        "labels": {
            "alertname": "VoiceDriveNotificationFailure",
            "level": "3",
            "severity": "critical",
            "system": "voicedrive",
            "component": "notifications",
        },
        "annotations": {"summary": "通知配信の大量失敗"},
        "startsAt": started,
    }
    webhooks = rx.services.metrics.webhooks

    def arrived() -> float:
        return float(webhooks.labels(outcome="accepted")._value.get())

    async with (
        aiohttp.ClientSession() as session,
        alertmanager(session, tmp_path, "am-a", receiver_url) as am_a,
        alertmanager(session, tmp_path, "am-b", receiver_url) as am_b,
    ):
        await post_alert(session, am_a, alert)
        await post_alert(session, am_b, alert)
        async with asyncio.timeout(15):
            while arrived() < 2:  # noqa: ASYNC110 - the counter has no event to wait on
                await asyncio.sleep(0.05)
    await rx.drain()
    assert webhooks.labels(outcome="invalid")._value.get() == 0
    processed = rx.services.metrics.processed
    assert processed.labels(outcome="stored")._value.get() == 1
    assert processed.labels(outcome="duplicate")._value.get() >= 1
    assert rx.channels["slack"].contacts() == [("emergency_channel", "firing")]
    assert sorted(rx.channels["sms"].contacts()) == [
        ("hotline", "firing"),
        ("medical_ops", "firing"),
    ]
    [incident] = await rx.store.list_incidents()
    assert (incident.level, incident.component) == (3, "notifications")


async def test_a_real_resolved_notification_reaches_the_channels_of_the_firing_one(
    rx: Harness, tmp_path: Path
) -> None:
    receiver_url = str(rx.client.make_url("")).rstrip("/")
    now = datetime.now(UTC)
    rx.clock.set(now)  # real Alertmanager times are checked against the receiver's clock
    alert = {
        "labels": {"alertname": "VoiceDriveApiSlow", "level": "2", "system": "voicedrive"},
        "annotations": {"summary": "API応答が遅い"},
        "startsAt": (now - timedelta(minutes=2)).isoformat(),
    }
    accepted = rx.services.metrics.webhooks.labels(outcome="accepted")
    async with (
        aiohttp.ClientSession() as session,
        alertmanager(session, tmp_path, "am", receiver_url) as am,
    ):
        await post_alert(session, am, alert)
        async with asyncio.timeout(15):
            while accepted._value.get() < 1:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.05)
        await rx.drain()
        await post_alert(session, am, {**alert, "endsAt": now.isoformat()})
        async with asyncio.timeout(15):
            while accepted._value.get() < 2:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.05)
    await rx.drain()
    assert rx.channels["slack"].contacts() == [
        ("emergency_channel", "firing"),
        ("emergency_channel", "resolved"),
    ]
    assert rx.channels["email"].contacts() == [("tech_lead", "firing"), ("tech_lead", "resolved")]
    [incident] = await rx.store.list_incidents()
    assert incident.status == "resolved"
