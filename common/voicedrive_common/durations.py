"""Prometheus-style durations ("30s", "1m30s", "500ms", "2h")."""

import re

from voicedrive_common.errors import ConfigError

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(value: object, path: str) -> float:
    """Seconds for a duration string such as ``1m30s``; plain numbers are seconds."""
    if isinstance(value, bool):
        raise ConfigError(path, f"expected a duration such as '30s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos = 0
        seconds = 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ConfigError(
                path, f"invalid duration {value!r} (use e.g. '500ms', '30s', '5m', '1h')"
            )
    else:
        raise ConfigError(path, f"expected a duration such as '30s', got {type(value).__name__}")
    if seconds < 0:
        raise ConfigError(path, f"duration must not be negative, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Shortest Prometheus duration string for a whole number of milliseconds."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            count, ms = divmod(ms, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)
