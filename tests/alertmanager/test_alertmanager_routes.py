"""alertmanager.yml is valid for amtool and routes every alert class where it must go."""

import subprocess
from typing import Any

import pytest
import yaml
from am_harness import ALERT_CLASSES, CONFIG, repo_config

from binaries import require_binary
from voicedrive_common.durations import parse_duration
from voicedrive_mixin.thresholds import load_thresholds

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


# What VoiceDriveSystemDown explains (its inhibition targets) plus itself.
HELD = {
    "VoiceDriveSystemDown",
    "VoiceDriveAPIDown",
    "VoiceDriveAPIEndpointDown",
    "VoiceDriveAPISlow",
    "VoiceDriveDatabaseDown",
    "VoiceDriveNotificationSuccessLow",
    "VoiceDriveNotificationMassFailure",
}
PROMETHEUS_CONFIG = CONFIG.parents[1] / "prometheus" / "prometheus.yml"


def matched_route(alertname: str) -> str:
    """The deepest route amtool's --tree shows for the alert with its class's labels."""
    amtool = require_binary("amtool")
    labels = {"alertname": alertname, **ALERT_CLASSES[alertname]}
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}", "--tree"]
        + [f"{k}={v}" for k, v in labels.items()],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    tree = [line for line in result.stdout.splitlines() if "── " in line]
    return tree[-1].split("── ", 1)[1]


def held_route() -> dict[str, Any]:
    """The sub-route that holds the alerts a Level 4 outage explains."""
    (route,) = [r for r in repo_config()["route"]["routes"] if r["receiver"] == RECEIVER]
    return route


@pytest.mark.parametrize("alertname", sorted(HELD))
def test_alerts_a_level4_outage_explains_take_the_held_route(alertname: str) -> None:
    assert matched_route(alertname).startswith("{alertname=~")


@pytest.mark.parametrize("alertname", sorted(set(ALERT_CLASSES) - HELD - {"Watchdog"}))
def test_other_alerts_take_the_default_route(alertname: str) -> None:
    assert matched_route(alertname).startswith("default-route")


def test_the_held_alerts_are_exactly_what_system_down_inhibits() -> None:
    (rule,) = [
        r
        for r in repo_config()["inhibit_rules"]
        if r["source_matchers"] == ['alertname="VoiceDriveSystemDown"']
    ]
    (target,) = rule["target_matchers"]
    inhibited = set(target.split('"')[1].split("|"))
    assert inhibited | {"VoiceDriveSystemDown"} == HELD


def test_the_hold_outlasts_the_level4_composites_extra_for() -> None:
    # The composite fires `for` after both parts are down; a part fires after its own `for`,
    # and the two parts' probes may turn red one scrape apart. The first page of a part's
    # group must wait at least that long, or the Level 3 page goes out before the Level 4
    # inhibition exists.
    t = load_thresholds()
    composite = t.alert("VoiceDriveSystemDown").for_seconds
    first_part = min(
        t.alert(name).for_seconds for name in ("VoiceDriveAPIDown", "VoiceDriveDatabaseDown")
    )
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    scrape = parse_duration(prometheus["global"]["scrape_interval"], "scrape_interval")
    hold = parse_duration(held_route()["group_wait"], "group_wait")
    assert hold >= composite - first_part + scrape
