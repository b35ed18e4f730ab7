"""alertmanager.yml is valid for amtool and routes every alert class where it must go."""

import subprocess

import pytest
from am_harness import ALERT_CLASSES, CONFIG, repo_config

from conftest import require_binary

RECEIVER = "voicedrive-receiver"
WATCHDOG = "voicedrive-watchdog"


def routed_receivers(*labels: str) -> list[str]:
    """Receivers amtool resolves for an alert with these ``name=value`` labels."""
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [name.strip() for name in result.stdout.strip().split(",") if name.strip()]


def test_amtool_check_config_accepts_the_file() -> None:
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("alertname", sorted(set(ALERT_CLASSES) - {"Watchdog"}))
@pytest.mark.parametrize("system", ["voicedrive", "medical", "both"])
def test_every_alert_class_routes_to_the_receiver_only(alertname: str, system: str) -> None:
    labels = {"alertname": alertname, "system": system, **ALERT_CLASSES[alertname]}
    assert routed_receivers(*(f"{k}={v}" for k, v in labels.items())) == [RECEIVER]


def test_an_alert_without_any_voicedrive_label_still_reaches_the_receiver() -> None:
    # A rule added later without level or system must still page (the receiver maps it).
    assert routed_receivers("alertname=SomethingNew") == [RECEIVER]


def test_watchdog_goes_to_the_heartbeat_receiver_only() -> None:
    labels = {"alertname": "Watchdog", **ALERT_CLASSES["Watchdog"]}
    assert routed_receivers(*(f"{k}={v}" for k, v in labels.items())) == [WATCHDOG]


def test_watchdog_route_repeats_within_minutes() -> None:
    (watchdog,) = [r for r in repo_config()["route"]["routes"] if r["receiver"] == WATCHDOG]
    assert watchdog["group_wait"] == "0s"
    assert watchdog["repeat_interval"] == "1m"


def test_paging_webhook_sends_resolved_with_a_bearer_token_file() -> None:
    (receiver,) = [r for r in repo_config()["receivers"] if r["name"] == RECEIVER]
    (hook,) = receiver["webhook_configs"]
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert "credentials_file" in auth
    assert "credentials" not in auth
