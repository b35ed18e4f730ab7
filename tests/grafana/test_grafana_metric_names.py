"""Every metric the overview dashboard reads is one the stack actually produces.

A misspelt name still parses (the real-Prometheus test would pass) but draws an empty panel;
this test compares the names with the exporter's metric table, the receiver's registries and
the generated recording rules.
"""

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from voicedrive_exporter.metrics import SPECS
from voicedrive_mixin import dashboards
from voicedrive_mixin.thresholds import load_thresholds
from voicedrive_receiver.lifecycle.metrics import LifecycleMetrics
from voicedrive_receiver.metrics import ReceiverMetrics

REPO = Path(__file__).resolve().parents[2]
BUILT_IN = {"ALERTS", "up"}


def exporter_names() -> set[str]:
    """Sample names of the exporter's metric table (counters gain _total, histograms parts)."""
    names = set()
    for name, spec in SPECS.items():
        if spec.kind == "counter":
            names.add(f"{name}_total")
        elif spec.kind == "histogram":
            names |= {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        else:
            names.add(name)
    return names


def receiver_names() -> set[str]:
    """Family and sample names of the receiver core and lifecycle registries."""
    registry = CollectorRegistry(auto_describe=True)
    ReceiverMetrics(channels=("console",), registry=registry)
    LifecycleMetrics(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


def recorded_names() -> set[str]:
    """Series the generated recording rules write."""
    names = set()
    for path in (REPO / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (ours: voicedrive_* and recorded a:b:c, built-ins)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_strings))
    return {t for t in tokens if t.startswith("voicedrive_") or ":" in t or t in BUILT_IN}


def dashboard_expressions() -> list[str]:
    """Every target expression of the overview dashboard."""
    board = dashboards.dashboard(load_thresholds())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("expr", dashboard_expressions())
def test_every_metric_a_panel_reads_exists(expr: str) -> None:
    known = exporter_names() | receiver_names() | recorded_names() | BUILT_IN
    names = metric_names(expr)
    assert names, f"no metric found in {expr}"
    assert names <= known, f"unknown metric(s) {sorted(names - known)} in {expr}"


def test_a_misspelt_metric_would_be_caught() -> None:
    known = exporter_names() | receiver_names() | recorded_names() | BUILT_IN
    assert not metric_names("voicedrive_api_upp") <= known
