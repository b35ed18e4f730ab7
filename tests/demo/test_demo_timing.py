"""The demo's compressed time is configuration: a mixin overrides file the thresholds loader
accepts, Alertmanager timers, and receiver lifecycle settings the receiver's own parser reads."""

from pathlib import Path

import yaml

from voicedrive_demo.ports import choose_ports
from voicedrive_demo.stack_configs import render_alertmanager, render_receiver
from voicedrive_demo.timing import Timing, compress_routes, thresholds_overrides, write_rules
from voicedrive_mixin.thresholds import load_thresholds
from voicedrive_receiver.config import load_config

TIMING = Timing()


def _overridden(tmp_path: Path) -> dict[str, float]:
    path = tmp_path / "overrides.yml"
    path.write_text(yaml.safe_dump(thresholds_overrides(TIMING)), encoding="utf-8")
    return {a.name: a.for_seconds for a in load_thresholds(None, path)}


def test_every_for_is_the_production_one_divided_by_the_pipeline_factor(tmp_path: Path) -> None:
    production = {a.name: a.for_seconds for a in load_thresholds()}
    demo = _overridden(tmp_path)
    assert demo == {name: round(s / TIMING.pipeline, 3) for name, s in production.items()}


def test_overrides_pass_every_relation_the_thresholds_loader_enforces(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yml"
    path.write_text(yaml.safe_dump(thresholds_overrides(TIMING)), encoding="utf-8")
    slow = load_thresholds(None, path).alert("VoiceDriveAPISlow")
    # Loading did not raise; the one relation with a parameter is kept by scaling both sides.
    assert slow.for_seconds > slow.param("window")
    assert slow.param("window") == 30.0
    failing = load_thresholds(None, path).alert("VoiceDriveReceiverWebhooksFailing")
    assert failing.for_seconds > failing.param("window") == 12.0


def test_rules_are_generated_through_the_mixin_cli(tmp_path: Path) -> None:
    pattern = write_rules(TIMING, tmp_path)
    [rules] = list(pattern.parent.glob(pattern.name))
    groups = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
    fors = {r["alert"]: r.get("for") for g in groups for r in g["rules"] if "alert" in r}
    assert fors["VoiceDriveSystemDown"] == "6s"


def test_alertmanager_timers_are_divided_in_every_route() -> None:
    route = {
        "group_wait": "30s",
        "group_interval": "1m",
        "repeat_interval": "4h",
        "routes": [{"group_wait": "0s", "repeat_interval": "1m", "receiver": "x"}],
    }
    assert compress_routes(route, TIMING) == {
        "group_wait": "3s",
        "group_interval": "6s",
        "repeat_interval": "24m",
        "routes": [{"group_wait": "0s", "repeat_interval": "6s", "receiver": "x"}],
    }


def test_demo_alertmanager_config_has_compressed_timers(tmp_path: Path) -> None:
    config = yaml.safe_load(
        render_alertmanager(
            ports=choose_ports(None, []), token_file=tmp_path / "token", timing=TIMING
        )
    )
    assert (config["route"]["group_wait"], config["route"]["group_interval"]) == ("3s", "6s")


def test_receiver_reads_the_compressed_lifecycle_timers(tmp_path: Path) -> None:
    path = tmp_path / "receiver.yml"
    path.write_text(
        render_receiver(
            ports=choose_ports(None, []),
            token_file=tmp_path / "token",
            store=tmp_path / "receiver.db",
            outbox=tmp_path / "outbox.jsonl",
            timing=TIMING,
        ),
        encoding="utf-8",
    )
    config = load_config(path)
    lifecycle = config.lifecycle
    escalate_after = lifecycle.escalation.level(2).escalate_after
    assert escalate_after is not None
    assert escalate_after.total_seconds() == 60.0
    assert config.incidents.reopen_within == 60.0
    assert lifecycle.scheduler_interval == 1.0
    assert lifecycle.schedule is not None


def test_banner_line_states_both_factors() -> None:
    text = TIMING.describe()
    assert "alerting x10" in text
    assert "incident timers x30" in text
    assert "escalation after 1m instead of 30m" in text


def test_keep_firing_for_is_divided_like_for(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yml"
    path.write_text(yaml.safe_dump(thresholds_overrides(TIMING)), encoding="utf-8")

    def keeps(loaded: object) -> dict[str, float]:
        return {
            a.name: float(getattr(a, "keep_firing_for_seconds", 0.0))
            for a in loaded  # type: ignore[attr-defined]
        }

    production = keeps(load_thresholds())
    assert keeps(load_thresholds(None, path)) == {
        name: round(seconds / TIMING.pipeline, 3) for name, seconds in production.items()
    }
