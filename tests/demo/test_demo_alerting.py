"""The demo's alerting half: mail catcher, receiver, real Alertmanager and real Prometheus with
the repo's files start on the demo's ports, see each other, and stop with the demo."""

import asyncio
import json
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from demo_helpers import Demo, alive, get, origin, start_demo, stop_demo

from voicedrive_demo.stack import alerting_missing

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The full demo on free ports, shared by this module's tests (the last one stops it)."""
    running = start_demo(tmp_path_factory.mktemp("alerting"), "--no-drill", "--duration", "120")
    yield running
    if running.proc.poll() is None:
        stop_demo(running)


def test_everything_the_alerting_half_needs_is_installed() -> None:
    assert alerting_missing() == []


def test_banner_lists_the_alerting_services(demo: Demo) -> None:
    for name in ("Prometheus", "Alertmanager", "receiver", "mail catcher"):
        assert f"  {name} " in demo.banner


async def test_prometheus_scrapes_every_target_of_the_repo_config(demo: Demo) -> None:
    url = origin(demo.urls["Prometheus"]) + "/api/v1/targets"
    health: dict[str, str] = {}
    for _ in range(300):  # bounded: 300 x 100 ms; the demo scrapes every 5 s
        _, body = await get(url)
        health = {
            t["labels"]["job"]: t["health"] for t in json.loads(body)["data"]["activeTargets"]
        }
        if health and all(state == "up" for state in health.values()):
            break
        await asyncio.sleep(0.1)
    assert health == {
        "voicedrive-exporter": "up",
        "voicedrive-receiver": "up",
        "alertmanager": "up",
        "prometheus": "up",
    }


async def test_prometheus_loaded_the_generated_rules(demo: Demo) -> None:
    url = origin(demo.urls["Prometheus"]) + "/api/v1/rules"
    _, body = await get(url)
    names = {r["name"] for g in json.loads(body)["data"]["groups"] for r in g["rules"]}
    assert {"VoiceDriveAPIDown", "VoiceDriveDatabaseDown"} <= names


async def test_alertmanager_is_ready(demo: Demo) -> None:
    url = origin(demo.urls["Alertmanager"]) + "/-/ready"
    status, _ = await get(url)
    assert status == 200


async def test_receiver_incidents_need_the_token_alertmanager_uses(demo: Demo) -> None:
    url = demo.urls["receiver"]
    token = (demo.dir / "receiver-token").read_text().strip()
    unauthorized, _ = await get(url)
    authorized, _ = await get(url, headers={"Authorization": f"Bearer {token}"})
    assert (unauthorized, authorized) == (401, 200)


def test_mail_catcher_keeps_each_mail_as_a_file(demo: Demo) -> None:
    host, port = demo.urls["mail catcher"].removeprefix("smtp://").split(":")
    message = EmailMessage()
    message["From"] = "test@voicedrive.example"
    message["To"] = "tech-lead@voicedrive.example"
    message["Subject"] = "テスト test"
    message.set_content("body")
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        smtp.send_message(message)
    files = list((demo.dir / "mail").glob("*.eml"))
    assert any("test@voicedrive.example" in f.read_text(errors="replace") for f in files)


def test_sigterm_stops_the_whole_stack(demo: Demo) -> None:
    assert len(demo.children) >= 7  # postgres and six services (and their own children)
    assert stop_demo(demo) == 0
    assert alive(demo.children) == []
