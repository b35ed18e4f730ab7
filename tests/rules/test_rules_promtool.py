"""promtool checks the generated rules and prometheus.yml and runs the rule unit tests."""

import subprocess
from pathlib import Path

import pytest
import yaml
from rules_helpers import require_binary

from voicedrive_mixin.thresholds import ALERT_NAMES

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    """Run promtool; the result holds its output for the assertion message."""
    return subprocess.run(
        [require_binary("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_there_are_rule_files() -> None:
    assert [p.name for p in RULE_FILES] == ["voicedrive.rules.yml"]


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_passes_promtool_check_rules(rule_file: Path) -> None:
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_rule_file_has_a_unit_test_file_named_after_it() -> None:
    expected = sorted(p.name.removesuffix(".yml") + ".test.yml" for p in RULE_FILES)
    assert [p.name for p in TEST_FILES] == expected


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", str(test_file.relative_to(PROMETHEUS)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert_cases() -> dict[str, dict[str, int]]:
    """Per alert: how many unit-test evaluations expect it firing and how many expect none."""
    cases = {name: {"firing": 0, "silent": 0} for name in ALERT_NAMES}
    for test_file in TEST_FILES:
        doc = yaml.safe_load(test_file.read_text(encoding="utf-8"))
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                kind = "firing" if case.get("exp_alerts") else "silent"
                cases[case["alertname"]][kind] += 1
    return cases


@pytest.mark.parametrize("alertname", [n for n in ALERT_NAMES if n != "Watchdog"])
def test_every_alert_has_firing_and_silent_unit_tests(alertname: str) -> None:
    counts = _alert_cases()[alertname]
    # At least: silent just before `for`, firing after it, silent after it resolves.
    assert counts["firing"] >= 1
    assert counts["silent"] >= 2


def test_every_firing_expectation_lists_all_annotations() -> None:
    wanted = {"summary", "description", "summary_en", "description_en"}
    wanted |= {"runbook_url", "dashboard_url"}
    for test_file in TEST_FILES:
        doc = yaml.safe_load(test_file.read_text(encoding="utf-8"))
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                for exp in case.get("exp_alerts") or []:
                    assert set(exp["exp_annotations"]) == wanted, (group["name"], case)
