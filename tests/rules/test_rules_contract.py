"""The generated rule file keeps the contract: names, labels, annotations, languages, links."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicedrive_mixin import rules
from voicedrive_mixin.thresholds import ALERT_NAMES, COMPONENTS, load_thresholds

REPO = Path(__file__).resolve().parents[2]
RULE_FILE = REPO / "prometheus" / "rules" / "voicedrive.rules.yml"


def alerting_rules(text: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(text)
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_rule_file_has_exactly_the_contract_alerts() -> None:
    assert list(alerting_rules(RULE_FILE.read_text(encoding="utf-8"))) == list(ALERT_NAMES)


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_labels_follow_the_contract(name: str) -> None:
    rule = alerting_rules(RULE_FILE.read_text(encoding="utf-8"))[name]
    labels = rule["labels"]
    if name == "Watchdog":
        assert "level" not in labels
    else:
        assert labels["level"] in {"1", "2", "3", "4"}
    assert labels["severity"] in {"warning", "critical"}
    assert labels["system"] in {"voicedrive", "medical", "both"}
    assert labels["component"] in COMPONENTS


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_annotations_link_runbook_and_dashboard(name: str) -> None:
    t = load_thresholds()
    annotations = alerting_rules(RULE_FILE.read_text(encoding="utf-8"))[name]["annotations"]
    assert list(annotations) == [
        "summary",
        "description",
        "summary_en",
        "description_en",
        "runbook_url",
        "dashboard_url",
    ]
    assert annotations["runbook_url"] == f"{t.settings.runbook_base_url}/{t.alert(name).runbook}"
    assert annotations["dashboard_url"].endswith("/d/voicedrive-overview")
    assert "[[" not in annotations["description"] + annotations["description_en"]


def test_language_en_puts_english_first_and_japanese_alongside(tmp_path: Path) -> None:
    overrides = tmp_path / "o.yml"
    overrides.write_text("settings:\n  language: en\n", encoding="utf-8")
    t = load_thresholds(overrides=overrides)
    down = alerting_rules(rules.rule_file(t))["VoiceDriveAPIDown"]["annotations"]
    assert down["summary"] == "Every VoiceDrive API endpoint is failing"
    assert down["summary_ja"] == "VoiceDrive API の全エンドポイントが応答しません"
    assert "summary_en" not in down


def test_every_number_in_an_expression_comes_from_the_thresholds(tmp_path: Path) -> None:
    overrides = tmp_path / "o.yml"
    overrides.write_text(
        "alerts:\n  VoiceDriveHostCPUCritical:\n    params: {threshold: 0.97}\n"
        "  VoiceDriveBackupStale:\n    params: {threshold: 2d}\n",
        encoding="utf-8",
    )
    generated = alerting_rules(rules.rule_file(load_thresholds(overrides=overrides)))
    assert "voicedrive_host_cpu_usage_ratio" in generated["VoiceDriveHostCPUCritical"]["expr"]
    assert generated["VoiceDriveHostCPUCritical"]["expr"].endswith("> 0.97")
    assert "> 172800\n" in generated["VoiceDriveBackupStale"]["expr"]
    assert "しきい値 97%" in generated["VoiceDriveHostCPUCritical"]["annotations"]["description"]


def test_watchdog_has_no_for_and_is_always_true() -> None:
    watchdog = alerting_rules(RULE_FILE.read_text(encoding="utf-8"))["Watchdog"]
    assert watchdog["expr"] == "vector(1)"
    assert "for" not in watchdog


def test_console_script_check_passes_on_the_repository() -> None:
    script = Path(sys.executable).parent / "voicedrive-mixin"
    result = subprocess.run(
        [str(script), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_receiver_alerts_read_the_receiver_job_from_the_settings(tmp_path: Path) -> None:
    overrides = tmp_path / "o.yml"
    overrides.write_text(
        "settings:\n  exporter_job: exp\n  receiver_job: rcv\n  alertmanager_job: am\n",
        encoding="utf-8",
    )
    generated = alerting_rules(rules.rule_file(load_thresholds(overrides=overrides)))
    # Alertmanager's counters, not the receiver's: the receiver cannot report webhooks it
    # never got.
    assert 'job="am"' in generated.pop("VoiceDriveReceiverWebhooksFailing")["expr"]
    receiver = [n for n in generated if n.startswith("VoiceDriveReceiver")]
    assert receiver == [
        "VoiceDriveReceiverDown",
        "VoiceDriveReceiverIngestFailed",
        "VoiceDriveReceiverBacklogStale",
        "VoiceDriveReceiverDeadLetters",
        "VoiceDriveReceiverOutboxStale",
    ]
    for name in receiver:
        assert 'job="rcv"' in generated[name]["expr"], name
    assert 'job="exp"' in generated["VoiceDriveDatabaseDown"]["expr"]
    assert not [n for n, r in generated.items() if 'job="voicedrive-' in r["expr"]]
