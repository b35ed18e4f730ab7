"""Level mapping (P2) and Alertmanager-style matchers, as tables."""

import pytest

from voicedrive_receiver.levels import LevelPolicy, LevelRule, alert_level, group_level
from voicedrive_receiver.matchers import parse_matcher
from voicedrive_receiver.models import parse_notification


def m(*texts: str) -> tuple:  # type: ignore[type-arg]
    return tuple(parse_matcher(t, "t") for t in texts)


POLICY = LevelPolicy(
    default=2,
    rules=(
        LevelRule(m('alertname="VoiceDriveSystemDown"'), 4),
        LevelRule(m('component=~"database|backup"', 'severity="critical"'), 3),
        LevelRule(m('severity="warning"', 'component!~"notifications"'), 1),
        LevelRule(m('team!="medical"', 'component="notifications"'), 3),
    ),
)


@pytest.mark.parametrize(
    ("labels", "level", "source"),
    [
        ({"level": "1"}, 1, "label"),
        ({"level": "4", "alertname": "x"}, 4, "label"),
        ({"level": " 3 "}, 3, "label"),
        ({"level": "5", "alertname": "VoiceDriveSystemDown"}, 4, "rule"),
        ({"level": "high", "severity": "warning"}, 1, "rule"),
        ({"alertname": "VoiceDriveSystemDown"}, 4, "rule"),
        ({"component": "database", "severity": "critical"}, 3, "rule"),
        ({"component": "backup", "severity": "critical"}, 3, "rule"),
        ({"component": "databases", "severity": "critical"}, 2, "default"),
        ({"component": "api", "severity": "warning"}, 1, "rule"),
        ({"component": "notifications", "severity": "warning"}, 3, "rule"),
        ({"component": "notifications", "team": "medical"}, 2, "default"),
        ({}, 2, "default"),
    ],
)
def test_alert_level(labels: dict[str, str], level: int, source: str) -> None:
    decision = alert_level(labels, POLICY)
    assert (decision.level, decision.source) == (level, source)


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ('a="x"', {"a": "x"}, True),
        ('a="x"', {"a": "xy"}, False),
        ('a!="x"', {}, True),
        ('a=~"x|y"', {"a": "y"}, True),
        ('a=~"x"', {"a": "xx"}, False),
        ('a!~"x.*"', {"a": "xyz"}, False),
        ('a!~"x.*"', {}, True),
        ('a=""', {}, True),
        ("a=plain", {"a": "plain"}, True),
        ('a="quote\\"d"', {"a": 'quote"d'}, True),
    ],
)
def test_matcher(matcher: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(matcher, "t").matches(labels) is expected


def _group(*alerts: tuple[str, str]) -> object:
    return parse_notification(
        {
            "version": "4",
            "groupKey": "g",
            "status": "firing",
            "alerts": [
                {
                    "status": status,
                    "labels": {"level": level},
                    "startsAt": "2025-09-01T00:00:00Z",
                    "fingerprint": f"f{i}",
                }
                for i, (level, status) in enumerate(alerts)
            ],
        }
    )


def test_group_level_is_the_highest_firing_alert() -> None:
    group = _group(("1", "firing"), ("3", "firing"), ("2", "firing"))
    assert group_level(group.alerts, POLICY) == 3  # type: ignore[attr-defined]


def test_group_level_ignores_resolved_alerts_while_others_fire() -> None:
    group = _group(("4", "resolved"), ("2", "firing"))
    assert group_level(group.alerts, POLICY) == 2  # type: ignore[attr-defined]


def test_all_resolved_group_keeps_its_highest_level() -> None:
    group = _group(("4", "resolved"), ("2", "resolved"))
    assert group_level(group.alerts, POLICY) == 4  # type: ignore[attr-defined]
