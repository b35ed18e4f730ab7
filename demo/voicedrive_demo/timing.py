"""The demo's compressed time, as configuration of the real parts (no special code paths).

Two factors. The alerting pipeline (probes, scrapes, rule evaluation, every alert's ``for``,
Alertmanager's group timers, the exporter's notification window, the Watchdog's allowed age)
runs ``pipeline`` times faster, all by the same factor, so every relation between them that
production relies on holds in the demo too (a composite alert's ``for`` shorter and its
``keep_firing_for`` longer than those of the alerts it inhibits, a ``for`` of several probe
rounds, ``VoiceDriveAPISlow``'s ``for`` longer than its window). The incident lifecycle
(escalation after 30 min, the 30-minute watch, response deadlines) runs ``lifecycle`` times
faster, chosen so that its timers stay whole minutes (the receiver's messages say "not
acknowledged within N minutes").

The rules come from ``voicedrive-mixin --overrides FILE --output-dir DIR`` with an overrides
file written here from the thresholds the mixin loads, so the demo follows any later change of
``mixin/thresholds.yml``.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voicedrive_common.durations import format_duration, parse_duration
from voicedrive_common.errors import VoiceDriveError
from voicedrive_demo.services import console_script

# Production cadences the pipeline factor divides (P4: the API is checked every 30 s).
PRODUCTION_PROBE = 30.0
PRODUCTION_NOTIFICATION_WINDOW = 300.0
PRODUCTION_WATCHDOG_MAX_AGE = 300.0
# The receiver's defaults (P2, P8) the lifecycle factor divides.
PRODUCTION_ESCALATE_AFTER = 1800.0
PRODUCTION_WATCH = 1800.0
PRODUCTION_FIRST_RESPONSE = 900.0
PRODUCTION_DEADLINES = {1: 4 * 3600.0, 2: 2 * 3600.0, 3: 3600.0, 4: 1800.0}
# Alert parameters that are windows of the probe cadence (or of Alertmanager's timers), not
# thresholds of the world. VoiceDriveReceiverWebhooksFailing's window spans one group_interval
# plus a scrape; Alertmanager's 10 s floor on a notification's retry deadline is not
# compressed, so in the demo its give-ups come every 10 s rather than 6 s and the 12 s window
# can have gaps: that alert is not reliable in the demo (no drill uses it).
_SCALED_PARAMS = {
    "VoiceDriveAPISlow": ("window",),
    "VoiceDriveReceiverWebhooksFailing": ("window",),
}
_AM_TIMERS = ("group_wait", "group_interval", "repeat_interval")


class RulesFailed(VoiceDriveError):
    """voicedrive-mixin refused the demo's overrides or could not write the rules."""


@dataclass(frozen=True)
class Timing:
    """How much faster than production the demo runs."""

    pipeline: float = 10.0
    lifecycle: float = 30.0
    # Timers are checked this often; production 5 s would be a large share of a 1 min timer.
    scheduler_interval: float = 1.0

    def pipeline_seconds(self, production: float) -> float:
        """A pipeline duration of production, compressed (whole milliseconds)."""
        return round(production / self.pipeline, 3)

    def lifecycle_seconds(self, production: float) -> float:
        """A lifecycle duration of production, compressed (whole milliseconds)."""
        return round(production / self.lifecycle, 3)

    @property
    def probe_interval(self) -> str:
        """Exporter probe, Prometheus scrape and evaluation interval."""
        return format_duration(self.pipeline_seconds(PRODUCTION_PROBE))

    @property
    def probe_timeout(self) -> str:
        """Two thirds of the probe interval: a probe run ends before the next one starts."""
        return format_duration(self.pipeline_seconds(PRODUCTION_PROBE) * 2 / 3)

    @property
    def notification_window(self) -> str:
        """The exporter's window for the notification success ratio."""
        return format_duration(self.pipeline_seconds(PRODUCTION_NOTIFICATION_WINDOW))

    @property
    def escalate_after(self) -> float:
        """Seconds an unacknowledged incident waits before it goes one level up."""
        return self.lifecycle_seconds(PRODUCTION_ESCALATE_AFTER)

    @property
    def watch(self) -> float:
        """Seconds a resolved incident is watched before it closes (``reopen_within``)."""
        return self.lifecycle_seconds(PRODUCTION_WATCH)

    def describe(self) -> str:
        """One line for the banner: what is compressed, and by how much."""
        return (
            f"Time is compressed: alerting x{self.pipeline:g} (probes and scrapes every "
            f"{self.probe_interval} instead of 30s, every rule's `for` and Alertmanager's "
            f"timers /{self.pipeline:g}); incident timers x{self.lifecycle:g} (escalation "
            f"after {format_duration(self.escalate_after)} instead of 30m, recovery watch "
            f"{format_duration(self.watch)} instead of 30m)."
        )


def thresholds_overrides(timing: Timing, thresholds: Path | None = None) -> dict[str, Any]:
    """An overrides mapping for ``voicedrive-mixin``: every ``for`` (and window) compressed."""
    # Imported here: the mixin is a build-time part; only the demo's rule generation needs it.
    from voicedrive_mixin.thresholds import load_thresholds

    loaded = load_thresholds(thresholds)
    alerts: dict[str, Any] = {}
    for alert in loaded:
        entry: dict[str, Any] = {"for": format_duration(timing.pipeline_seconds(alert.for_seconds))}
        # How long an alert keeps firing after its condition cleared is a rule duration like
        # `for` (optional in the thresholds file; absent in older versions of the loader).
        keep = float(getattr(alert, "keep_firing_for_seconds", 0.0))
        if keep > 0:
            entry["keep_firing_for"] = format_duration(timing.pipeline_seconds(keep))
        params = {
            name: format_duration(timing.pipeline_seconds(alert.param(name)))
            for name in _SCALED_PARAMS.get(alert.name, ())
        }
        if params:
            entry["params"] = params
        alerts[alert.name] = entry
    return {"alerts": alerts}


def write_rules(timing: Timing, directory: Path) -> Path:
    """Write the overrides file and generate the rules below ``directory``; the rules' glob."""
    directory.mkdir(parents=True, exist_ok=True)
    overrides = directory / "thresholds.override.yml"
    header = (
        "# Written by voicedrive-demo on every start: mixin/thresholds.yml with every `for`,\n"
        f"# `keep_firing_for` and VoiceDriveAPISlow's window divided by {timing.pipeline:g}.\n"
    )
    overrides.write_text(
        header + yaml.safe_dump(thresholds_overrides(timing), sort_keys=False), encoding="utf-8"
    )
    return generate_rules(overrides, directory / "generated") / "*.yml"


def generate_rules(overrides: Path, out: Path) -> Path:
    """Run ``voicedrive-mixin`` with ``overrides`` into ``out``; the folder of the rule files."""
    result = subprocess.run(
        [
            *console_script("voicedrive-mixin"),
            "--overrides",
            str(overrides),
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RulesFailed(f"voicedrive-mixin --overrides {overrides}: {result.stderr.strip()}")
    return out / "prometheus" / "rules"


def compress_routes(route: dict[str, Any], timing: Timing) -> dict[str, Any]:
    """An Alertmanager route tree with every group timer divided by the pipeline factor."""
    out = dict(route)
    for key in _AM_TIMERS:
        if key in out:
            seconds = parse_duration(str(out[key]), key)
            out[key] = format_duration(timing.pipeline_seconds(seconds))
    if "routes" in out:
        out["routes"] = [compress_routes(child, timing) for child in out["routes"]]
    return out


def lifecycle_section(timing: Timing, *, prometheus_url: str) -> dict[str, Any]:
    """The receiver's ``lifecycle:`` and ``incidents:`` settings with compressed timers."""
    after = format_duration(timing.escalate_after)
    levels: dict[int, dict[str, str]] = {}
    for level, deadline in PRODUCTION_DEADLINES.items():
        levels[level] = {"response_deadline": format_duration(timing.lifecycle_seconds(deadline))}
        if level < 4:
            levels[level]["escalate_after"] = after
    return {
        "incidents": {"reopen_within": format_duration(timing.watch)},
        "lifecycle": {
            "escalation": {
                "first_response": format_duration(
                    timing.lifecycle_seconds(PRODUCTION_FIRST_RESPONSE)
                ),
                "levels": levels,
                "top_repeat": after,
            },
            "scheduler": {"interval": format_duration(timing.scheduler_interval)},
            # Alertmanager repeats the Watchdog every few seconds here; at least a minute
            # keeps the daily check's "expected within N min" a whole minute.
            "watchdog": {
                "max_age": format_duration(
                    max(60.0, timing.pipeline_seconds(PRODUCTION_WATCHDOG_MAX_AGE))
                )
            },
            "daily_check": {"prometheus_url": prometheus_url},
        },
    }
