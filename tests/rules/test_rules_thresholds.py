"""The thresholds loader: defaults from the protocol, overrides, and errors naming key paths."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicedrive_common.durations import parse_duration
from voicedrive_common.errors import ConfigError
from voicedrive_mixin.thresholds import DEFAULT_PATH, INHIBITS, RECOVERS, load_thresholds

PROMETHEUS_CONFIG = DEFAULT_PATH.parent.parent / "prometheus" / "prometheus.yml"

ISSUE_TABLE = {
    "VoiceDriveAPISlow": 2,
    "VoiceDriveAPIEndpointDown": 2,
    "VoiceDriveAPIDown": 3,
    "VoiceDriveNotificationSuccessLow": 2,
    "VoiceDriveNotificationMassFailure": 3,
    "VoiceDriveDatabaseDown": 3,
    "VoiceDriveSystemDown": 4,
    "VoiceDriveHostCPUHigh": 1,
    "VoiceDriveHostCPUCritical": 2,
    "VoiceDriveHostMemoryHigh": 1,
    "VoiceDriveHostMemoryCritical": 2,
    "VoiceDriveBackupStale": 2,
    "VoiceDriveProbeStale": 2,
    "VoiceDriveExporterDown": 3,
    "VoiceDriveTLSCertExpiring": 1,
    "VoiceDriveReceiverDown": 3,
    "VoiceDriveReceiverWebhooksFailing": 3,
    "VoiceDriveReceiverIngestFailed": 3,
    "VoiceDriveReceiverBacklogStale": 3,
    "VoiceDriveReceiverDeadLetters": 2,
    "VoiceDriveReceiverOutboxStale": 2,
    "Watchdog": None,
}


def defaults() -> dict[str, Any]:
    """A fresh copy of the default thresholds file's data."""
    data = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return copy.deepcopy(data)


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_alerts_and_levels_are_the_issue_table() -> None:
    t = load_thresholds()
    assert {a.name: a.level for a in t.alerts} == ISSUE_TABLE


def test_defaults_are_the_p5_thresholds() -> None:
    t = load_thresholds()
    assert t.alert("VoiceDriveAPISlow").threshold == 0.5
    assert t.alert("VoiceDriveNotificationSuccessLow").threshold == 0.95
    assert t.alert("VoiceDriveHostCPUHigh").threshold == 0.8
    assert t.alert("VoiceDriveHostCPUCritical").threshold == 0.9
    assert t.alert("VoiceDriveHostMemoryHigh").threshold == 0.8
    assert t.alert("VoiceDriveHostMemoryCritical").threshold == 0.9
    assert t.alert("VoiceDriveTLSCertExpiring").threshold == 14 * 86400


def test_channels_follow_p6_by_level() -> None:
    t = load_thresholds()
    assert t.alert("VoiceDriveHostCPUHigh").channels == ("slack",)
    assert t.alert("VoiceDriveAPISlow").channels == ("slack", "email")
    assert t.alert("VoiceDriveAPIDown").channels == ("slack", "email", "sms")
    assert t.alert("VoiceDriveSystemDown").channels == ("slack", "email", "sms", "phone")
    assert t.alert("Watchdog").channels == ()


def test_placeholders_render_with_units() -> None:
    alert = load_thresholds().alert("VoiceDriveAPISlow")
    assert alert.render("[[threshold]] [[window]] [[quantile]] [[min_requests]] [[for]]") == (
        "500ms 5m 95% 3 10m"
    )


def test_override_changes_only_the_keys_it_names(tmp_path: Path) -> None:
    overrides = write(
        tmp_path,
        "o.yml",
        {"alerts": {"VoiceDriveAPISlow": {"for": "15m", "params": {"threshold": "300ms"}}}},
    )
    base = load_thresholds()
    t = load_thresholds(overrides=overrides)
    slow = t.alert("VoiceDriveAPISlow")
    assert (slow.threshold, slow.for_seconds) == (0.3, 900)
    assert slow.param("window") == base.alert("VoiceDriveAPISlow").param("window")
    assert slow.summary == base.alert("VoiceDriveAPISlow").summary
    assert t.alert("VoiceDriveAPIDown") == base.alert("VoiceDriveAPIDown")


def test_override_of_settings_and_texts(tmp_path: Path) -> None:
    overrides = write(
        tmp_path,
        "o.yml",
        {
            "settings": {"language": "en", "grafana_url": "https://grafana.example"},
            "alerts": {"Watchdog": {"summary": {"en": "heartbeat"}}},
        },
    )
    t = load_thresholds(overrides=overrides)
    assert t.settings.language == "en"
    assert t.settings.dashboard_url == "https://grafana.example/d/voicedrive-overview"
    assert t.alert("Watchdog").summary.en == "heartbeat"
    assert t.alert("Watchdog").summary.ja == load_thresholds().alert("Watchdog").summary.ja


def test_override_level_keys_may_be_unquoted(tmp_path: Path) -> None:
    overrides = tmp_path / "o.yml"
    overrides.write_text("channels_by_level:\n  1: [slack, email]\n", encoding="utf-8")
    t = load_thresholds(overrides=overrides)
    assert t.alert("VoiceDriveHostCPUHigh").channels == ("slack", "email")


def test_keep_firing_for_is_set_only_on_the_sources_that_recover_after_their_targets() -> None:
    t = load_thresholds()
    keep = {a.name: a.keep_firing_for_seconds for a in t.alerts if a.keep_firing_for_seconds}
    assert keep == {"VoiceDriveSystemDown": 60, "VoiceDriveNotificationMassFailure": 360}


def test_system_down_keeps_firing_for_a_probe_round_and_an_evaluation() -> None:
    # A Level 4 part that comes back one probe round after the other reaches Prometheus one
    # scrape later and resolves at the next evaluation: the composite must still fire then.
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    scrape = parse_duration(prometheus["global"]["scrape_interval"], "scrape_interval")
    evaluation = parse_duration(prometheus["global"]["evaluation_interval"], "evaluation")
    keep = load_thresholds().alert("VoiceDriveSystemDown").keep_firing_for_seconds
    assert keep >= scrape + evaluation


def test_override_sets_keep_firing_for(tmp_path: Path) -> None:
    overrides = write(
        tmp_path, "o.yml", {"alerts": {"VoiceDriveSystemDown": {"keep_firing_for": "5s"}}}
    )
    assert (
        load_thresholds(overrides=overrides).alert("VoiceDriveSystemDown").keep_firing_for_seconds
        == 5
    )


def test_override_may_add_keep_firing_for_to_an_alert_without_one(tmp_path: Path) -> None:
    overrides = write(
        tmp_path, "o.yml", {"alerts": {"VoiceDriveHostCPUCritical": {"keep_firing_for": "2m"}}}
    )
    t = load_thresholds(overrides=overrides)
    assert t.alert("VoiceDriveHostCPUCritical").keep_firing_for_seconds == 120
    assert t.alert("VoiceDriveHostCPUHigh").keep_firing_for_seconds == 0


def test_every_recovering_source_keeps_firing_longer_than_its_targets() -> None:
    t = load_thresholds()
    for source, targets in RECOVERS:
        for target in targets:
            kept = t.alert(source).keep_firing_for_seconds
            assert kept > t.alert(target).keep_firing_for_seconds, (source, target)


def test_recovering_pairs_are_inhibitions_whose_target_fires_with_its_source() -> None:
    # Only a target that can be firing under its source can outlive it at recovery.
    inhibits = {(s, t) for s, targets in INHIBITS for t in targets}
    assert {(s, t) for s, targets in RECOVERS for t in targets} <= inhibits


OVERRIDE_ERRORS = [
    (
        {"alerts": {"VoiceDriveApiSlow": {"for": "1m"}}},
        "alerts.VoiceDriveApiSlow: unknown alert; known: VoiceDriveAPISlow,",
    ),
    (
        {"alerts": {"VoiceDriveAPISlow": {"fro": "1m"}}},
        "alerts.VoiceDriveAPISlow.fro: unknown key; known: params, for,",
    ),
    (
        {"alerts": {"VoiceDriveAPISlow": {"params": {"treshold": "1s"}}}},
        "alerts.VoiceDriveAPISlow.params.treshold: unknown key; known: threshold,",
    ),
    (
        {"alerts": {"VoiceDriveAPIDown": {"params": {"threshold": 1}}}},
        "alerts.VoiceDriveAPIDown.params: unknown key; known: for, level,",
    ),
    ({"setings": {}}, "setings: unknown key; known: settings, channels_by_level, alerts"),
    ({"alerts": {"VoiceDriveAPISlow": "off"}}, "alerts.VoiceDriveAPISlow: expected a mapping"),
    (
        {"alerts": {"VoiceDriveAPISlow": {"for": "soon"}}},
        "alerts.VoiceDriveAPISlow.for: invalid duration 'soon'",
    ),
    (
        {"alerts": {"VoiceDriveHostCPUHigh": {"params": {"threshold": 80}}}},
        "alerts.VoiceDriveHostCPUHigh.params.threshold: must be at most 1, got 80",
    ),
    (
        {"alerts": {"VoiceDriveHostCPUHigh": {"params": {"threshold": 0.95}}}},
        "alerts.VoiceDriveHostCPUCritical.params.threshold: must be above the threshold of "
        "VoiceDriveHostCPUHigh",
    ),
    (
        {"alerts": {"VoiceDriveAPIDown": {"for": "1m"}}},
        "alerts.VoiceDriveSystemDown.for: must be shorter than alerts.VoiceDriveAPIDown.for "
        "(1m), got 1m: VoiceDriveSystemDown inhibits VoiceDriveAPIDown and must fire first",
    ),
    (
        {"alerts": {"VoiceDriveSystemDown": {"for": "5m"}}},
        "alerts.VoiceDriveSystemDown.for: must be shorter than alerts.VoiceDriveAPIDown.for "
        "(2m), got 5m",
    ),
    (
        {"alerts": {"VoiceDriveSystemDown": {"keep_firing_for": "soon"}}},
        "alerts.VoiceDriveSystemDown.keep_firing_for: invalid duration 'soon'",
    ),
    (
        {"alerts": {"VoiceDriveSystemDown": {"keep_firing_for": -5}}},
        "alerts.VoiceDriveSystemDown.keep_firing_for: duration must not be negative, got -5",
    ),
    (
        {"alerts": {"VoiceDriveSystemDown": {"keep_firing_fro": "1m"}}},
        "alerts.VoiceDriveSystemDown.keep_firing_fro: unknown key; known: for, keep_firing_for,",
    ),
    (
        {"alerts": {"VoiceDriveAPIDown": {"keep_firing_fro": "1m"}}},
        "alerts.VoiceDriveAPIDown.keep_firing_fro: unknown key; known: for, level, severity, "
        "system, component, runbook, summary, description, keep_firing_for",
    ),
    ({"settings": {"keep_firing_for": "1m"}}, "settings.keep_firing_for: unknown key; known:"),
    (
        {"alerts": {"VoiceDriveSystemDown": {"keep_firing_for": "0s"}}},
        "alerts.VoiceDriveSystemDown.keep_firing_for: must be longer than "
        "alerts.VoiceDriveAPIDown.keep_firing_for (0s), got 0s: VoiceDriveSystemDown inhibits "
        "VoiceDriveAPIDown, which can still be firing when VoiceDriveSystemDown resolves",
    ),
    (
        {"alerts": {"VoiceDriveNotificationSuccessLow": {"keep_firing_for": "10m"}}},
        "alerts.VoiceDriveNotificationMassFailure.keep_firing_for: must be longer than "
        "alerts.VoiceDriveNotificationSuccessLow.keep_firing_for (10m), got 6m",
    ),
]


@pytest.mark.parametrize(("override", "message"), OVERRIDE_ERRORS)
def test_invalid_override_names_its_key_path(
    tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    overrides = write(tmp_path, "deploy.yml", override)
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=overrides)
    assert message in str(info.value)


def test_bad_value_from_overrides_is_reported_against_the_overrides_file(tmp_path: Path) -> None:
    overrides = write(tmp_path, "deploy.yml", {"alerts": {"VoiceDriveAPIDown": {"level": 9}}})
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=overrides)
    assert str(info.value) == (
        f"{overrides}: alerts.VoiceDriveAPIDown.level: must be at most 4, got 9"
    )


def test_for_order_broken_by_the_overrides_is_reported_against_the_overrides_file(
    tmp_path: Path,
) -> None:
    # The override touched only the target's `for`; the error names the source's key and is
    # still blamed on the file that broke the relation.
    overrides = write(tmp_path, "deploy.yml", {"alerts": {"VoiceDriveDatabaseDown": {"for": "1m"}}})
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=overrides)
    assert str(info.value).startswith(
        f"{overrides}: alerts.VoiceDriveSystemDown.for: must be shorter than "
        "alerts.VoiceDriveDatabaseDown.for (1m)"
    )


def test_keep_firing_for_relation_broken_by_the_overrides_is_reported_against_it(
    tmp_path: Path,
) -> None:
    # The override touched only the part; the error names the composite's key and both keys.
    overrides = write(
        tmp_path, "deploy.yml", {"alerts": {"VoiceDriveDatabaseDown": {"keep_firing_for": "1m"}}}
    )
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=overrides)
    assert str(info.value).startswith(
        f"{overrides}: alerts.VoiceDriveSystemDown.keep_firing_for: must be longer than "
        "alerts.VoiceDriveDatabaseDown.keep_firing_for (1m), got 1m"
    )


def test_shortened_for_values_that_keep_the_order_load(tmp_path: Path) -> None:
    # What an end-to-end test does: every `for` in seconds, sources still first.
    overrides = write(
        tmp_path,
        "fast.yml",
        {
            "alerts": {
                "VoiceDriveSystemDown": {"for": "2s"},
                "VoiceDriveAPIDown": {"for": "4s"},
                "VoiceDriveDatabaseDown": {"for": "4s"},
            }
        },
    )
    t = load_thresholds(overrides=overrides)
    assert t.alert("VoiceDriveSystemDown").for_seconds == 2


def _with(path: str, value: object) -> dict[str, Any]:
    """The defaults with ``value`` set at the dotted ``path`` (None deletes the key)."""
    data = defaults()
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


INVALID_FILES = [
    (_with("alerts.VoiceDriveAPIDown", None), "alerts: missing alert VoiceDriveAPIDown"),
    (_with("alerts.VoiceDriveDiskFull", {"for": "1m"}), "alerts.VoiceDriveDiskFull: unknown alert"),
    (
        _with("alerts.VoiceDriveAPIDown.level", 5),
        "alerts.VoiceDriveAPIDown.level: must be at most 4",
    ),
    (_with("alerts.VoiceDriveAPIDown.level", None), "alerts.VoiceDriveAPIDown.level: is required"),
    (_with("alerts.Watchdog.level", 1), "alerts.Watchdog.level: Watchdog carries no level"),
    (
        _with("alerts.VoiceDriveAPIDown.severity", "page"),
        "alerts.VoiceDriveAPIDown.severity: must be one of warning, critical; got 'page'",
    ),
    (
        _with("alerts.VoiceDriveAPIDown.component", "frontend"),
        "alerts.VoiceDriveAPIDown.component: must be one of api, notifications,",
    ),
    (
        _with("alerts.VoiceDriveAPIDown.runbook", "api.md"),
        "alerts.VoiceDriveAPIDown.runbook: expected 'file.md#anchor' in lower case",
    ),
    (
        _with("alerts.VoiceDriveAPIDown.summary", {"ja": "停止"}),
        "alerts.VoiceDriveAPIDown.summary.en: is required",
    ),
    (
        _with("alerts.VoiceDriveAPIDown.description", {"ja": "[[threshold]]", "en": "x"}),
        "alerts.VoiceDriveAPIDown.description.ja: unknown placeholder [[threshold]]; known: for",
    ),
    (
        _with("alerts.VoiceDriveAPISlow.params.quantile", None),
        "alerts.VoiceDriveAPISlow.params.quantile: is required",
    ),
    (
        _with("alerts.VoiceDriveAPISlow.for", "5m"),
        "alerts.VoiceDriveAPISlow.for: must be longer than params.window (5m)",
    ),
    (
        _with("alerts.VoiceDriveReceiverWebhooksFailing.for", "2m"),
        "alerts.VoiceDriveReceiverWebhooksFailing.for: must be longer than params.window (2m)",
    ),
    (
        _with("alerts.VoiceDriveReceiverDown.for", "3m"),
        "alerts.VoiceDriveReceiverDown.for: must be shorter than "
        "alerts.VoiceDriveReceiverWebhooksFailing.for (3m), got 3m",
    ),
    (
        _with("settings.alertmanager_job", None),
        "settings.alertmanager_job: is required",
    ),
    (
        _with("alerts.VoiceDriveNotificationMassFailure.params.threshold", 0.96),
        "alerts.VoiceDriveNotificationMassFailure.params.threshold: must be below the threshold "
        "of VoiceDriveNotificationSuccessLow",
    ),
    (
        _with("alerts.VoiceDriveDatabaseDown.for", "30s"),
        "alerts.VoiceDriveSystemDown.for: must be shorter than alerts.VoiceDriveDatabaseDown.for",
    ),
    (
        _with("alerts.VoiceDriveNotificationMassFailure.for", "7m"),
        "alerts.VoiceDriveNotificationMassFailure.for: must be shorter than "
        "alerts.VoiceDriveNotificationSuccessLow.for (7m), got 7m",
    ),
    (
        _with("alerts.VoiceDriveAPIDown.for", "10m"),
        "alerts.VoiceDriveAPIDown.for: must be shorter than alerts.VoiceDriveAPISlow.for (10m)",
    ),
    (
        _with("alerts.VoiceDriveHostMemoryHigh.for", "5m"),
        "alerts.VoiceDriveHostMemoryCritical.for: must be shorter than "
        "alerts.VoiceDriveHostMemoryHigh.for (5m)",
    ),
    (
        _with("alerts.VoiceDriveAPIDown.keep_firing_for", "1m"),
        "alerts.VoiceDriveSystemDown.keep_firing_for: must be longer than "
        "alerts.VoiceDriveAPIDown.keep_firing_for (1m), got 1m",
    ),
    (
        _with("channels_by_level.2", ["slack", "pager"]),
        "channels_by_level.2: unknown channel 'pager'; known: slack, email, sms, phone",
    ),
    (_with("channels_by_level.4", None), "channels_by_level.4: is required"),
    (_with("settings.language", "fr"), "settings.language: must be one of ja, en; got 'fr'"),
    (_with("settings.colour", "red"), "settings: unknown key 'colour'"),
    (_with("extra", {}), "<root>: unknown key 'extra'"),
]


@pytest.mark.parametrize(("data", "message"), INVALID_FILES)
def test_invalid_thresholds_file_names_its_key_path(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, "thresholds.yml", data)
    with pytest.raises(ConfigError) as info:
        load_thresholds(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yml"
    path.write_text("settings: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_thresholds(path)
    assert str(info.value).startswith(f"{path}: <root>: invalid YAML: line 2, column 1")


def test_missing_overrides_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=tmp_path / "nope.yml")
    assert "nope.yml: <root>: cannot read file" in str(info.value)


def test_example_overrides_file_loads() -> None:
    t = load_thresholds(overrides=DEFAULT_PATH.parent / "overrides.example.yml")
    assert t.alert("VoiceDriveAPISlow").threshold == 0.8
    assert t.alert("VoiceDriveBackupStale").threshold == 50 * 3600
    assert t.settings.grafana_url == "https://grafana.example.jp"
