"""The configs the demo writes for Prometheus, Alertmanager and the receiver are valid for the
real tools and point at the demo's own ports and files."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from voicedrive_demo.ports import Ports, choose_ports
from voicedrive_demo.stack_configs import (
    remap_addresses,
    render_alertmanager,
    render_prometheus,
    render_receiver,
)
from voicedrive_receiver.config import load_config


def require_binary(name: str) -> str:
    """Path of a real binary; missing fails (never skips), as tests/conftest.py's helper.

    Imported by name ``conftest`` that helper can resolve to another folder's conftest.py.
    """
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/ensure-system-packages.sh")
    return path


@pytest.fixture
def ports() -> Ports:
    """A shifted block, so that every address must have been remapped."""
    return choose_ports(31000, [])


def test_remap_moves_default_ports_and_leaves_others(ports: Ports) -> None:
    tree = {"a": ["127.0.0.1:9917", "x 127.0.0.1:19093/y"], "b": "127.0.0.1:5555", "c": 9917}
    assert remap_addresses(tree, ports) == {
        "a": [f"127.0.0.1:{ports['exporter']}", f"x 127.0.0.1:{ports['alertmanager']}/y"],
        "b": "127.0.0.1:5555",
        "c": 9917,
    }


def test_prometheus_config_passes_promtool(ports: Ports, tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(render_prometheus(ports=ports, interval="5s"))
    result = subprocess.run(
        [require_binary("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_demo_ports(ports: Ports) -> None:
    config = yaml.safe_load(render_prometheus(ports=ports, interval="5s"))
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets["voicedrive-exporter"] == [ports.address("exporter")]
    assert targets["voicedrive-receiver"] == [ports.address("receiver")]
    alerting = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == [ports.address("alertmanager")]
    assert config["global"]["evaluation_interval"] == "5s"


def test_alertmanager_config_passes_amtool(ports: Ports, tmp_path: Path) -> None:
    token = tmp_path / "receiver-token"
    token.write_text("t" * 32)
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager(ports=ports, token_file=token))
    result = subprocess.run(
        [require_binary("amtool"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_sends_to_the_demo_receiver_with_its_token(
    ports: Ports, tmp_path: Path
) -> None:
    token = tmp_path / "receiver-token"
    config = yaml.safe_load(render_alertmanager(ports=ports, token_file=token))
    webhooks = [w for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert webhooks
    for webhook in webhooks:
        assert webhook["url"].startswith(ports.url("receiver"))
        assert webhook["http_config"]["authorization"]["credentials_file"] == str(token)


def test_alertmanager_fallback_mails_the_demo_mail_catcher(ports: Ports, tmp_path: Path) -> None:
    config = yaml.safe_load(render_alertmanager(ports=ports, token_file=tmp_path / "token"))
    (fallback,) = [r for r in config["receivers"] if r["name"] == "voicedrive-fallback"]
    (mail,) = fallback["email_configs"]
    assert mail["smarthost"] == ports.address("smtp")
    # The catcher speaks plain SMTP on loopback.
    assert mail["require_tls"] is False


def test_alertmanager_in_the_demo_never_tries_slack(ports: Ports, tmp_path: Path) -> None:
    # No webhook URL and no network in the demo: Alertmanager's own Slack is left out.
    config = yaml.safe_load(render_alertmanager(ports=ports, token_file=tmp_path / "token"))
    assert [r["name"] for r in config["receivers"] if "slack_configs" in r] == []


def test_receiver_config_passes_the_receivers_validation(ports: Ports, tmp_path: Path) -> None:
    path = tmp_path / "receiver.yml"
    path.write_text(
        render_receiver(
            ports=ports,
            token_file=tmp_path / "receiver-token",
            store=tmp_path / "receiver.db",
            outbox=tmp_path / "outbox.jsonl",
        ),
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.server.external_url == ports.url("receiver")
