"""Level mapping (P2): the ``level`` label, else ordered policy rules, else the default."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from voicedrive_receiver.matchers import Matcher, matches_all
from voicedrive_receiver.models import Alert

LEVELS = (1, 2, 3, 4)
Source = Literal["label", "rule", "default"]


@dataclass(frozen=True)
class LevelRule:
    """Alerts matching every matcher get ``level``."""

    matchers: tuple[Matcher, ...]
    level: int


@dataclass(frozen=True)
class LevelPolicy:
    """Ordered rules (first match wins) and the default for alerts nothing else decides."""

    default: int = 2
    rules: tuple[LevelRule, ...] = ()


@dataclass(frozen=True)
class LevelDecision:
    """A level and where it came from."""

    level: int
    source: Source


def label_level(value: str | None) -> int | None:
    """The level a ``level`` label names, or None when absent or not "1".."4"."""
    if value is None:
        return None
    text = value.strip()
    if text in ("1", "2", "3", "4"):
        return int(text)
    return None


def alert_level(labels: Mapping[str, str], policy: LevelPolicy) -> LevelDecision:
    """Decide one alert's level."""
    from_label = label_level(labels.get("level"))
    if from_label is not None:
        return LevelDecision(from_label, "label")
    for rule in policy.rules:
        if matches_all(rule.matchers, labels):
            return LevelDecision(rule.level, "rule")
    return LevelDecision(policy.default, "default")


def group_level(alerts: Iterable[Alert], policy: LevelPolicy) -> int:
    """The highest level of the firing alerts; for an all-resolved group, of all its alerts."""
    alerts = tuple(alerts)
    firing = [a for a in alerts if a.status == "firing"] or list(alerts)
    return max((alert_level(a.labels, policy).level for a in firing), default=policy.default)
