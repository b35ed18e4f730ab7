"""The README alert table (Markdown), generated so it cannot drift from the rules."""

from voicedrive_mixin.rules import condition
from voicedrive_mixin.thresholds import Thresholds

BEGIN = "<!-- BEGIN alert-table -->"
END = "<!-- END alert-table -->"


def alert_table(t: Thresholds) -> str:
    """The Markdown table: alert, condition, for, keep firing for, level, ..., runbook."""
    lines = [
        "| alert | condition | for | keep firing for | level | severity | channels | runbook |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for alert in t.alerts:
        level = str(alert.level) if alert.level is not None else "-"
        channels = ", ".join(alert.channels) if alert.channels else "receiver heartbeat only"
        runbook = f"[{alert.runbook}](docs/runbooks/{alert.runbook})"
        keep = alert.keep_firing_for_text if alert.keep_firing_for_seconds > 0 else "-"
        cells = [f"`{alert.name}`", condition(alert), alert.for_text, keep, level, alert.severity]
        lines.append("| " + " | ".join([*cells, channels, runbook]) + " |")
    return "\n".join(lines) + "\n"


def splice(current: str, content: str, *, begin: str = BEGIN, end: str = END) -> str:
    """``current`` with the text between the ``begin`` and ``end`` markers replaced."""
    start = current.find(begin)
    stop = current.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"markers {begin} ... {end} not found")
    head = current[: start + len(begin)]
    return f"{head}\n{content}{current[stop:]}"
