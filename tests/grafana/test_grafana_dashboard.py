"""The overview dashboard is valid Grafana JSON, provisioned by uid, drawn from the thresholds."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicedrive_mixin import dashboards
from voicedrive_mixin.thresholds import Thresholds, load_thresholds

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / dashboards.PATH
DATASOURCES = REPO / "grafana/provisioning/datasources/prometheus.yml"
PROVIDERS = REPO / "grafana/provisioning/dashboards/voicedrive.yml"


def load_dashboard() -> dict[str, Any]:
    """The checked-in dashboard file."""
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that draws data (rows excluded)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def panel_with_metric(board: dict[str, Any], metric: str) -> dict[str, Any]:
    """The one panel whose first query reads ``metric``."""
    found = [p for p in panels(board) if metric in p["targets"][0]["expr"]]
    assert len(found) == 1, f"{metric}: {[p['title'] for p in found]}"
    return found[0]


def step_values(panel: dict[str, Any]) -> list[float | None]:
    """The threshold step values of a panel, in order."""
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_checked_in_dashboard_is_what_the_generator_writes() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == dashboards.overview(load_thresholds())


def test_dashboard_has_the_uid_the_alerts_link_to() -> None:
    # Every alert's dashboard_url ends in /d/<uid>: the uid must never change by accident.
    assert load_dashboard()["uid"] == "voicedrive-overview"
    assert load_dashboard()["uid"] == load_thresholds().settings.dashboard_uid


def test_dashboard_carries_a_schema_version_and_a_title() -> None:
    board = load_dashboard()
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36  # datasource-by-uid references need 33+
    assert board["title"]


def test_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in load_dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_every_panel_has_a_grid_position_inside_24_columns_and_none_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load_dashboard()["panels"]:
        pos = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= pos.keys(), panel["title"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_datasource_reference_is_the_provisioned_uid() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    for panel in panels(load_dashboard()):
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": source["uid"]}


def test_dashboard_provider_reads_a_folder_of_files() -> None:
    (provider,) = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


@pytest.mark.parametrize(
    "metric",
    [
        "voicedrive_api_up",
        "endpoint:voicedrive_api_request_duration_seconds:quantile",
        "voicedrive_notification_success_ratio",
        "voicedrive_db_up",
        "voicedrive_db_connect_duration_seconds",
        "voicedrive_host_cpu_usage_ratio",
        "voicedrive_host_memory_usage_ratio",
        'ALERTS{alertstate="firing"',
        "voicedrive_receiver_incidents_open",
        "voicedrive_receiver_sla_breaches_total",
        'voicedrive_receiver_deliveries_total{job="voicedrive-receiver", outcome="success"}',
        'voicedrive_receiver_deliveries_total{job="voicedrive-receiver", outcome=~"retry',
        "voicedrive_receiver_outbox_depth",
        "voicedrive_receiver_ingest_backlog{",
        "voicedrive_receiver_ingest_backlog_oldest_age_seconds",
        "voicedrive_receiver_dead_letters_total",
    ],
)
def test_the_overview_shows(metric: str) -> None:
    assert panel_with_metric(load_dashboard(), metric)["title"]


def overridden(tmp_path: Path, overrides: str) -> Thresholds:
    """Thresholds with a deployment's overrides file applied."""
    path = tmp_path / "overrides.yml"
    path.write_text(overrides, encoding="utf-8")
    return load_thresholds(overrides=path)


def test_latency_panel_draws_the_slow_api_threshold() -> None:
    panel = panel_with_metric(load_dashboard(), "voicedrive_api_request_duration_seconds")
    slow = load_thresholds().alert("VoiceDriveAPISlow").threshold
    assert slow == 0.5
    assert step_values(panel) == [None, slow]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"


def test_changing_the_slow_api_threshold_moves_the_drawn_line(tmp_path: Path) -> None:
    t = overridden(tmp_path, "alerts:\n  VoiceDriveAPISlow:\n    params:\n      threshold: 300ms\n")
    panel = panel_with_metric(dashboards.dashboard(t), "voicedrive_api_request_duration_seconds")
    assert step_values(panel) == [None, 0.3]


def test_success_rate_panel_draws_the_95_percent_and_mass_failure_lines() -> None:
    t = load_thresholds()
    panel = panel_with_metric(load_dashboard(), "voicedrive_notification_success_ratio")
    low = t.alert("VoiceDriveNotificationSuccessLow").threshold
    mass = t.alert("VoiceDriveNotificationMassFailure").threshold
    assert low == 0.95
    assert step_values(panel) == [None, mass, low]


@pytest.mark.parametrize("resource", ["CPU", "Memory"])
def test_host_panels_draw_the_high_and_critical_bands(resource: str) -> None:
    t = load_thresholds()
    metric = f"voicedrive_host_{resource.lower()}_usage_ratio"
    panel = panel_with_metric(load_dashboard(), metric)
    high = t.alert(f"VoiceDriveHost{resource}High").threshold
    critical = t.alert(f"VoiceDriveHost{resource}Critical").threshold
    assert (high, critical) == (0.8, 0.9)
    assert step_values(panel) == [None, high, critical]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line+area"


def test_changing_the_cpu_critical_threshold_moves_the_band(tmp_path: Path) -> None:
    t = overridden(
        tmp_path, "alerts:\n  VoiceDriveHostCPUCritical:\n    params:\n      threshold: 0.95\n"
    )
    panel = panel_with_metric(dashboards.dashboard(t), "voicedrive_host_cpu_usage_ratio")
    assert step_values(panel) == [None, 0.8, 0.95]


def test_english_deployment_gets_english_titles(tmp_path: Path) -> None:
    t = overridden(tmp_path, "settings:\n  language: en\n")
    board = dashboards.dashboard(t)
    assert board["title"] == "VoiceDrive overview"
    assert panel_with_metric(board, "voicedrive_host_cpu_usage_ratio")["title"] == "CPU usage"


def test_oldest_waiting_notification_panel_draws_the_backlog_stale_threshold(
    tmp_path: Path,
) -> None:
    metric = "voicedrive_receiver_ingest_backlog_oldest_age_seconds"
    panel = panel_with_metric(load_dashboard(), metric)
    assert step_values(panel) == [None, 300]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    t = overridden(
        tmp_path, "alerts:\n  VoiceDriveReceiverBacklogStale:\n    params:\n      threshold: 2m\n"
    )
    assert step_values(panel_with_metric(dashboards.dashboard(t), metric)) == [None, 120]
