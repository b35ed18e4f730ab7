"""Loading mixin/thresholds.yml (plus an optional overrides file) into frozen, typed objects.

The alert names and each alert's parameters are the contract; the file supplies their values.
Overrides may only change keys the defaults already have, so a typo in a deployment's file is
an error naming its key path instead of a silently ignored setting.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from voicedrive_common.confload import Node, parse_yaml
from voicedrive_common.durations import format_duration
from voicedrive_common.errors import ConfigError

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "thresholds.yml"

LANGUAGES = ("ja", "en")
SEVERITIES = ("warning", "critical")
SYSTEMS = ("voicedrive", "medical", "both")
COMPONENTS = ("api", "notifications", "database", "host", "backup", "monitoring")
CHANNELS = ("slack", "email", "sms", "phone")
LEVELS = (1, 2, 3, 4)

# Alerts that carry no level (contracts.md: the Watchdog only).
NO_LEVEL = frozenset({"Watchdog"})
# Per-alert keys an alert may leave out (defaults on ``Alert``); an overrides file may set them
# on any alert although the defaults file does not name them there.
OPTIONAL_ALERT_KEYS = ("keep_firing_for",)


def human_duration(seconds: float) -> str:
    """A Prometheus duration, in whole days when it is a multiple of a day (``14d``)."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    return format_duration(seconds)


class ParamKind(Enum):
    """How a parameter is read from YAML and shown in texts."""

    SECONDS = "seconds"  # a duration such as 500ms or 26h; shown as a duration
    RATIO = "ratio"  # 0..1; shown as a percentage
    COUNT = "count"  # a non-negative number; shown as a number


_S, _R, _C = ParamKind.SECONDS, ParamKind.RATIO, ParamKind.COUNT

# The contract: every alert and the parameters its rule expression uses, in table order.
ALERT_PARAMS: dict[str, dict[str, ParamKind]] = {
    "VoiceDriveAPISlow": {"threshold": _S, "quantile": _R, "window": _S, "min_requests": _C},
    "VoiceDriveAPIEndpointDown": {},
    "VoiceDriveAPIDown": {},
    "VoiceDriveNotificationSuccessLow": {"threshold": _R, "min_notifications": _C},
    "VoiceDriveNotificationMassFailure": {"threshold": _R, "min_notifications": _C},
    "VoiceDriveDatabaseDown": {},
    "VoiceDriveSystemDown": {},
    "VoiceDriveHostCPUHigh": {"threshold": _R},
    "VoiceDriveHostCPUCritical": {"threshold": _R},
    "VoiceDriveHostMemoryHigh": {"threshold": _R},
    "VoiceDriveHostMemoryCritical": {"threshold": _R},
    "VoiceDriveBackupStale": {"threshold": _S},
    "VoiceDriveProbeStale": {"threshold": _S},
    "VoiceDriveExporterDown": {},
    "VoiceDriveTLSCertExpiring": {"threshold": _S},
    "VoiceDriveReceiverDown": {},
    "VoiceDriveReceiverWebhooksFailing": {"window": _S},
    "VoiceDriveReceiverIngestFailed": {},
    "VoiceDriveReceiverBacklogStale": {"threshold": _S},
    "VoiceDriveReceiverDeadLetters": {"window": _S},
    "VoiceDriveReceiverOutboxStale": {"threshold": _S},
    "Watchdog": {},
}
ALERT_NAMES = tuple(ALERT_PARAMS)

# Inhibitions whose source and target can turn true from one fault (alertmanager.yml's
# inhibit_rules; tests/alertmanager checks the two lists agree). Inhibition only works once the
# source is in Alertmanager: a target that fires first is paged at its own level, and no
# group_wait can hold it back reliably (an existing aggregation group flushes at its next
# group_interval tick). So each source's `for` must be strictly shorter than its targets': the
# source then fires before a target that turned true with it (a whole evaluation earlier when
# the difference is at least the evaluation interval, as in the defaults).
INHIBITS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "VoiceDriveSystemDown",
        (
            "VoiceDriveAPIDown",
            "VoiceDriveAPISlow",
            "VoiceDriveDatabaseDown",
            "VoiceDriveNotificationSuccessLow",
            "VoiceDriveNotificationMassFailure",
        ),
    ),
    ("VoiceDriveAPIDown", ("VoiceDriveAPISlow",)),
    ("VoiceDriveNotificationMassFailure", ("VoiceDriveNotificationSuccessLow",)),
    ("VoiceDriveHostCPUCritical", ("VoiceDriveHostCPUHigh",)),
    ("VoiceDriveHostMemoryCritical", ("VoiceDriveHostMemoryHigh",)),
)
# Inhibitions whose target can still be firing when its source resolves, because one fault
# clears in stages: the second part of a Level 4 outage comes back a probe round after the
# first; the success ratio over the exporter's sliding window climbs back above 95 % up to a
# window after it passed 50 %. Alertmanager mutes a target only while its source fires, so the
# source must keep firing (`keep_firing_for`) past its target's own `keep_firing_for`, or the
# target is paged right after the source's resolved message. Not listed: a target that is
# false while its source fires (INHIBITS_EXCLUSIVE) or starts from scratch at recovery and is
# held back by its own `for` (the notification alerts under VoiceDriveSystemDown: their ratio
# is read from the database and API that alert says are down, so it is absent meanwhile), and
# VoiceDriveAPISlow, still true after recovery only from answers measured before the outage.
RECOVERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("VoiceDriveSystemDown", ("VoiceDriveAPIDown", "VoiceDriveDatabaseDown")),
    ("VoiceDriveNotificationMassFailure", ("VoiceDriveNotificationSuccessLow",)),
)
# Inhibitions without a `for` relation: the target's expression needs another endpoint up, the
# source's every endpoint down, so both are never true in the same evaluation.
INHIBITS_EXCLUSIVE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("VoiceDriveSystemDown", ("VoiceDriveAPIEndpointDown",)),
    ("VoiceDriveAPIDown", ("VoiceDriveAPIEndpointDown",)),
)

_PLACEHOLDER = re.compile(r"\[\[([a-z_]+)\]\]")
_RUNBOOK = re.compile(r"^[a-z0-9][a-z0-9_-]*\.md#[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Texts:
    """One user-facing text in every supported language."""

    ja: str
    en: str

    def get(self, language: str) -> str:
        """The text in ``language`` (ja or en)."""
        return self.ja if language == "ja" else self.en


@dataclass(frozen=True)
class Param:
    """A named number an alert's expression uses."""

    name: str
    kind: ParamKind
    value: float

    def display(self) -> str:
        """The value with its unit, as shown in texts and the README table."""
        if self.kind is ParamKind.SECONDS:
            return human_duration(self.value)
        if self.kind is ParamKind.RATIO:
            return f"{self.value * 100:g}%"
        return f"{self.value:g}"


@dataclass(frozen=True)
class Alert:
    """One alert's thresholds, timing, labels and texts."""

    name: str
    params: tuple[Param, ...]
    for_seconds: float
    level: int | None
    severity: str
    system: str
    component: str
    runbook: str
    summary: Texts
    description: Texts
    channels: tuple[str, ...]
    # Seconds the alert stays firing after its expression turns false (Prometheus
    # `keep_firing_for`); 0: it resolves in the first evaluation that finds it false.
    keep_firing_for_seconds: float = 0.0

    def param(self, name: str) -> float:
        """The value of parameter ``name`` (seconds, ratio or count)."""
        return self.get_param(name).value

    def get_param(self, name: str) -> Param:
        """Parameter ``name`` (KeyError when the alert has none by that name)."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(f"{self.name} has no parameter {name!r}")

    @property
    def threshold(self) -> float:
        """The main threshold (``params.threshold``)."""
        return self.param("threshold")

    @property
    def for_text(self) -> str:
        """``for`` as a Prometheus duration such as ``5m``."""
        return human_duration(self.for_seconds)

    @property
    def keep_firing_for_text(self) -> str:
        """``keep_firing_for`` as a Prometheus duration such as ``1m``."""
        return human_duration(self.keep_firing_for_seconds)

    def render(self, text: str) -> str:
        """``text`` with ``[[name]]`` placeholders replaced by parameter values and ``for``."""
        values = {p.name: p.display() for p in self.params}
        values["for"] = self.for_text
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


@dataclass(frozen=True)
class Settings:
    """Deployment-wide settings used to build labels and links."""

    exporter_job: str
    receiver_job: str
    alertmanager_job: str
    language: str
    runbook_base_url: str
    grafana_url: str
    dashboard_uid: str

    @property
    def dashboard_url(self) -> str:
        """Link to the overview dashboard."""
        return f"{self.grafana_url.rstrip('/')}/d/{self.dashboard_uid}"

    def runbook_url(self, alert: Alert) -> str:
        """Link to the alert's runbook anchor."""
        return f"{self.runbook_base_url.rstrip('/')}/{alert.runbook}"


@dataclass(frozen=True)
class Thresholds:
    """Everything in thresholds.yml, validated."""

    settings: Settings
    channels_by_level: tuple[tuple[int, tuple[str, ...]], ...]
    alerts: tuple[Alert, ...]

    def alert(self, name: str) -> Alert:
        """The alert called ``name`` (KeyError for an unknown name)."""
        for alert in self.alerts:
            if alert.name == name:
                return alert
        raise KeyError(f"unknown alert {name!r}")

    def __iter__(self) -> Iterator[Alert]:
        return iter(self.alerts)


class RelationError(ConfigError):
    """Two keys that are valid alone but contradict each other; ``related`` names the other."""

    def __init__(
        self, path: str, message: str, *, related: tuple[str, ...], source: str | None = None
    ) -> None:
        super().__init__(path, message, source=source)
        self.related = related


def load_thresholds(path: Path | None = None, overrides: Path | None = None) -> Thresholds:
    """Load the thresholds file (default: mixin/thresholds.yml), merging ``overrides`` over it."""
    path = path or DEFAULT_PATH
    data = _read(path)
    if overrides is None:
        return parse_thresholds(data, source=str(path))
    touched: set[str] = set()
    merged = _merge(data, _read(overrides), "", str(overrides), touched)
    try:
        return parse_thresholds(merged, source=str(path))
    except ConfigError as exc:
        # A bad value that came from the overrides file must be reported against that file.
        paths = (exc.path, *(exc.related if isinstance(exc, RelationError) else ()))
        if any(p == t or p.startswith((t + ".", t + "[")) for p in paths for t in touched):
            raise ConfigError(exc.path, exc.reason, source=str(overrides)) from None
        raise


def parse_thresholds(data: dict[str, Any], *, source: str | None = None) -> Thresholds:
    """Validate an already parsed thresholds mapping."""
    root = Node(data, "", source)
    settings = _settings(root.node("settings", required=True))
    channels = _channels(root.node("channels_by_level", required=True))
    alerts_node = root.node("alerts", required=True)
    names = alerts_node.keys()
    for name in names:
        if name not in ALERT_PARAMS:
            raise alerts_node.error(name, f"unknown alert; known: {', '.join(ALERT_NAMES)}")
    missing = [n for n in ALERT_NAMES if n not in names]
    if missing:
        raise ConfigError("alerts", f"missing alert {', '.join(missing)}", source=source)
    by_name = dict(alerts_node.items())
    alerts = tuple(_alert(name, by_name[name], dict(channels)) for name in ALERT_NAMES)
    root.done()
    result = Thresholds(settings=settings, channels_by_level=channels, alerts=alerts)
    _cross_checks(result, source)
    return result


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read file: {exc.strerror}", source=str(path)) from None
    parse_yaml(text, source=str(path))  # raises ConfigError with line and column on bad YAML
    data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", "expected a mapping at the top level", source=str(path))
    return data


def _merge(
    base: dict[Any, Any], over: dict[Any, Any], path: str, source: str, touched: set[str]
) -> dict[Any, Any]:
    merged = dict(base)
    for raw_key, value in over.items():
        key = str(raw_key)
        sub = f"{path}.{key}" if path else key
        optional = OPTIONAL_ALERT_KEYS if _is_alert_path(path) else ()
        if key not in base and key not in optional:
            what = "unknown alert" if path == "alerts" else "unknown key"
            known = ", ".join([*(str(k) for k in base), *(k for k in optional if k not in base)])
            raise ConfigError(sub, f"{what}; known: {known}", source=source)
        if key in base and isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(sub, "expected a mapping", source=source)
            merged[key] = _merge(base[key], value, sub, source, touched)
        else:
            merged[key] = value
            touched.add(sub)
    return merged


def _is_alert_path(path: str) -> bool:
    """Whether ``path`` is one alert's mapping (``alerts.<name>``)."""
    parent, _, name = path.rpartition(".")
    return parent == "alerts" and bool(name)


def _settings(node: Node) -> Settings:
    settings = Settings(
        exporter_job=node.text("exporter_job"),
        receiver_job=node.text("receiver_job"),
        alertmanager_job=node.text("alertmanager_job"),
        language=node.text("language", choices=LANGUAGES),
        runbook_base_url=node.text("runbook_base_url"),
        grafana_url=node.text("grafana_url"),
        dashboard_uid=node.text("dashboard_uid"),
    )
    node.done()
    return settings


def _channels(node: Node) -> tuple[tuple[int, tuple[str, ...]], ...]:
    out: list[tuple[int, tuple[str, ...]]] = []
    for level in LEVELS:
        channels = node.texts(str(level))
        for channel in channels:
            if channel not in CHANNELS:
                raise node.error(
                    str(level), f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}"
                )
        out.append((level, channels))
    node.done()
    return tuple(out)


def _alert(name: str, node: Node, channels: dict[int, tuple[str, ...]]) -> Alert:
    params = _params(name, node.node("params"))
    level: int | None
    if name in NO_LEVEL:
        if node.has("level"):
            raise node.error("level", f"{name} carries no level")
        level = None
    else:
        level = node.integer("level", lo=1, hi=4)
    alert = Alert(
        name=name,
        params=params,
        for_seconds=node.duration("for"),
        keep_firing_for_seconds=node.duration("keep_firing_for", 0.0, lo=0),
        level=level,
        severity=node.text("severity", choices=SEVERITIES),
        system=node.text("system", choices=SYSTEMS),
        component=node.text("component", choices=COMPONENTS),
        runbook=_runbook(node),
        summary=_texts(node.node("summary", required=True)),
        description=_texts(node.node("description", required=True)),
        channels=channels[level] if level is not None else (),
    )
    allowed = {p.name for p in params} | {"for"}
    for key in ("summary", "description"):
        for language in LANGUAGES:
            text = getattr(alert, key).get(language)
            for match in _PLACEHOLDER.finditer(text):
                if match.group(1) not in allowed:
                    raise node.error(
                        f"{key}.{language}",
                        f"unknown placeholder [[{match.group(1)}]]; "
                        f"known: {', '.join(sorted(allowed))}",
                    )
    node.done()
    return alert


def _params(name: str, node: Node) -> tuple[Param, ...]:
    out = []
    for key, kind in ALERT_PARAMS[name].items():
        if kind is ParamKind.SECONDS:
            value = node.duration(key)
        elif kind is ParamKind.RATIO:
            value = node.number(key, lo=0, hi=1)
        else:
            value = node.number(key, lo=0)
        out.append(Param(key, kind, value))
    node.done()
    return tuple(out)


def _runbook(node: Node) -> str:
    value: str = node.text("runbook")
    if not _RUNBOOK.match(value):
        raise node.error("runbook", f"expected 'file.md#anchor' in lower case, got {value!r}")
    return value


def _texts(node: Node) -> Texts:
    texts = Texts(ja=node.text("ja"), en=node.text("en"))
    node.done()
    return texts


def _cross_checks(t: Thresholds, source: str | None) -> None:
    _for_past_window(t, "VoiceDriveAPISlow", "one slow request", source)
    # A receiver that is down fails every webhook too: ReceiverDown must fire first, the
    # expression of WebhooksFailing is false from then on (rules.py).
    _for_past_window(t, "VoiceDriveReceiverWebhooksFailing", "one given-up notification", source)
    _webhooks_failing_order(t, source)
    _inhibition_order(t, source)
    _recovery_order(t, source)
    pairs = (
        ("VoiceDriveHostCPUHigh", "VoiceDriveHostCPUCritical", "above"),
        ("VoiceDriveHostMemoryHigh", "VoiceDriveHostMemoryCritical", "above"),
        ("VoiceDriveNotificationMassFailure", "VoiceDriveNotificationSuccessLow", "below"),
    )
    for low, high, word in pairs:
        if t.alert(low).threshold >= t.alert(high).threshold:
            worse = high if word == "above" else low
            other = low if word == "above" else high
            raise ConfigError(
                f"alerts.{worse}.params.threshold",
                f"must be {word} the threshold of {other}",
                source=source,
            )


def _for_past_window(t: Thresholds, name: str, event: str, source: str | None) -> None:
    """An alert over an increase() or rate() window: one event alone must not page."""
    alert = t.alert(name)
    if alert.for_seconds <= alert.param("window"):
        raise ConfigError(
            f"alerts.{name}.for",
            f"must be longer than params.window ({alert.get_param('window').display()}): "
            f"{event} stays in the window that long and must not page alone",
            source=source,
        )


def _webhooks_failing_order(t: Thresholds, source: str | None) -> None:
    failing = t.alert("VoiceDriveReceiverWebhooksFailing")
    down = t.alert("VoiceDriveReceiverDown")
    if down.for_seconds >= failing.for_seconds:
        raise RelationError(
            "alerts.VoiceDriveReceiverDown.for",
            f"must be shorter than alerts.VoiceDriveReceiverWebhooksFailing.for "
            f"({failing.for_text}), got {down.for_text}: a receiver that is down fails every "
            "webhook as well and must be paged once, as VoiceDriveReceiverDown",
            related=("alerts.VoiceDriveReceiverWebhooksFailing.for",),
            source=source,
        )


def _inhibition_order(t: Thresholds, source: str | None) -> None:
    for name, targets in INHIBITS:
        inhibitor = t.alert(name)
        for target_name in targets:
            target = t.alert(target_name)
            if inhibitor.for_seconds < target.for_seconds:
                continue
            raise RelationError(
                f"alerts.{name}.for",
                f"must be shorter than alerts.{target_name}.for ({target.for_text}), got "
                f"{inhibitor.for_text}: {name} inhibits {target_name} and must fire first, "
                f"or {target_name} is paged before the inhibition exists",
                related=(f"alerts.{target_name}.for",),
                source=source,
            )


def _recovery_order(t: Thresholds, source: str | None) -> None:
    for name, targets in RECOVERS:
        inhibitor = t.alert(name)
        for target_name in targets:
            target = t.alert(target_name)
            if inhibitor.keep_firing_for_seconds > target.keep_firing_for_seconds:
                continue
            raise RelationError(
                f"alerts.{name}.keep_firing_for",
                f"must be longer than alerts.{target_name}.keep_firing_for "
                f"({target.keep_firing_for_text}), got {inhibitor.keep_firing_for_text}: "
                f"{name} inhibits {target_name}, which can still be firing when {name} "
                f"resolves, and would then be paged after {name}'s resolved message",
                related=(f"alerts.{target_name}.keep_firing_for",),
                source=source,
            )
