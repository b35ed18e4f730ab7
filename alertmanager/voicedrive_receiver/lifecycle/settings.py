"""The ``lifecycle`` section of the receiver config (issue 5).

```yaml
lifecycle:
  schedule_file: schedule.phase2.yml   # relative to the config file; or `schedule:` inline
  business_hours: {team: medical, start: "08:00", end: "18:00", hold_up_to_level: 2}
  escalation: {levels: {2: {escalate_after: 30m}}, first_response: 15m, top_repeat: 30m,
               top_widen: [[management]]}
  scheduler: {interval: 5s}
  watchdog: {max_age: 5m, page: {channel: sms, to: [hotline]}}
  daily_check: {channel_max_age: 24h, backup_max_age: 26h,
                prometheus_url: "http://127.0.0.1:19090", timeout: 5s}
```
Every key is optional; the defaults are the protocol's.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voicedrive_common.confload import Node, load_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.lifecycle.business_hours import HoldPolicy, parse_hold_policy
from voicedrive_receiver.lifecycle.escalation import EscalationPolicy, parse_escalation_policy
from voicedrive_receiver.lifecycle.schedule import Schedule, parse_schedule


@dataclass(frozen=True)
class WatchdogPage:
    """Where the dead man's switch pages when the heartbeat stops (channel, audience tokens)."""

    channel: str
    to: tuple[str, ...]


@dataclass(frozen=True)
class WatchdogSettings:
    """The Alertmanager ``Watchdog`` heartbeat: how old it may get, who hears when it stops."""

    max_age: float = 300.0
    page: tuple[WatchdogPage, ...] = ()


@dataclass(frozen=True)
class DailyCheckSettings:
    """Limits of the daily check and where the backup age is read."""

    channel_max_age: float = 86400.0
    backup_max_age: float = 26 * 3600.0
    prometheus_url: str = ""
    backup_query: str = "max(voicedrive_backup_age_seconds)"
    timeout: float = 5.0


@dataclass(frozen=True)
class LifecycleConfig:
    """Schedule, business hours, escalation and the daily check."""

    schedule: Schedule | None = None
    hold: HoldPolicy = field(default_factory=HoldPolicy)
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    scheduler_interval: float = 5.0
    watchdog: WatchdogSettings = field(default_factory=WatchdogSettings)
    daily_check: DailyCheckSettings = field(default_factory=DailyCheckSettings)
    schedule_source: str = ""


def parse_lifecycle(
    node: Node,
    *,
    contacts: Sequence[str],
    channels: Mapping[str, str],
    monitoring: float,
    base_dir: Path | None = None,
) -> LifecycleConfig:
    """The lifecycle section; ``channels`` maps channel names to kinds (for the watchdog page)."""
    schedule = None
    source = ""
    if node.has("schedule") and node.has("schedule_file"):
        raise node.error("schedule_file", "set either schedule or schedule_file, not both")
    if node.has("schedule_file"):
        name = node.text("schedule_file")
        path = Path(name)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            schedule = parse_schedule(load_yaml(path), known_contacts=contacts)
        except ConfigError as exc:
            # The schedule file's own path and key path, under the key that named the file.
            raise ConfigError(f"{node.path}.schedule_file", str(exc), source=node.source) from None
        source = str(path)
    elif node.has("schedule"):
        schedule = parse_schedule(node.node("schedule"), known_contacts=contacts)
        source = node.source or ""
    hold = parse_hold_policy(node.node("business_hours"))
    escalation = parse_escalation_policy(node.node("escalation"), monitoring=monitoring)
    for i, stage in enumerate(escalation.top_widen):
        for contact in stage:
            if contact not in contacts:
                raise node.error(f"escalation.top_widen[{i}]", f"unknown contact {contact!r}")
    scheduler = node.node("scheduler")
    interval = scheduler.duration("interval", 5.0, lo=0.05)
    scheduler.done()
    watchdog = _watchdog(node.node("watchdog"), contacts=contacts, channels=channels)
    daily = node.node("daily_check")
    daily_check = DailyCheckSettings(
        channel_max_age=daily.duration("channel_max_age", 86400.0, lo=1),
        backup_max_age=daily.duration("backup_max_age", 26 * 3600.0, lo=1),
        prometheus_url=daily.text("prometheus_url", "").rstrip("/"),
        backup_query=daily.text("backup_query", "max(voicedrive_backup_age_seconds)"),
        timeout=daily.duration("timeout", 5.0, lo=0.1),
    )
    daily.done()
    node.done()
    return LifecycleConfig(
        schedule=schedule,
        hold=hold,
        escalation=escalation,
        scheduler_interval=interval,
        watchdog=watchdog,
        daily_check=daily_check,
        schedule_source=source,
    )


def _watchdog(
    node: Node, *, contacts: Sequence[str], channels: Mapping[str, str]
) -> WatchdogSettings:
    pages = []
    for item in node.nodes("page", []):
        channel = item.text("channel")
        if channel not in channels:
            raise item.error("channel", f"unknown channel {channel!r}")
        to: tuple[str, ...] = item.texts("to")
        for i, contact in enumerate(to):
            if contact not in contacts:
                raise item.error(f"to[{i}]", f"unknown contact {contact!r}")
        if not to:
            raise item.error("to", "needs at least one contact")
        pages.append(WatchdogPage(channel=channel, to=to))
        item.done()
    settings = WatchdogSettings(max_age=node.duration("max_age", 300.0, lo=1), page=tuple(pages))
    node.done()
    return settings
