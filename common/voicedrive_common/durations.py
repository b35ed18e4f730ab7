"""Prometheus durations ("30s", "1m30s", "500ms", "2h").

The syntax is Prometheus' own: an integer count per unit, units in descending order
``y w d h m s ms``, each at most once, e.g. ``1h30m``; ``0`` alone is zero. Plain numbers,
fractions (``1.5m``), units out of order (``1s1h``), NaN and infinity are rejected, and so is
anything longer than MAX_SECONDS: no interval or timeout here is meant to be longer, and a huge
value would make a probe run once and never again.
"""

import math
import re

from voicedrive_common.errors import ConfigError

_UNITS = (
    ("y", 31536000.0),
    ("w", 604800.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)
_SYNTAX = re.compile("".join(rf"(?:(?P<{unit}>\d+){unit})?" for unit, _ in _UNITS))
MAX_SECONDS = 31536000.0
"""One year: the longest duration any config key accepts."""

_HINT = "use e.g. '500ms', '30s', '5m', '1h'"


def parse_duration(value: object, path: str) -> float:
    """Seconds for a Prometheus duration string such as ``1m30s`` (``0`` is zero)."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(path, f"expected a duration such as '30s', got {value!r}")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(path, f"duration must be finite, got {value!r}")
        if value < 0:
            raise ConfigError(path, f"duration must not be negative, got {value!r}")
        raise ConfigError(path, f"expected a duration with a unit, got {value!r} ({_HINT})")
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a duration such as '30s', got {type(value).__name__}")
    text = value.strip()
    if text == "0":
        return 0.0
    if text.startswith("-"):
        raise ConfigError(path, f"duration must not be negative, got {value!r}")
    match = _SYNTAX.fullmatch(text)
    if not text or match is None:
        raise ConfigError(path, f"invalid duration {value!r} ({_HINT})")
    seconds = sum(int(match[unit]) * size for unit, size in _UNITS if match[unit] is not None)
    if seconds > MAX_SECONDS:
        raise ConfigError(path, f"duration must be at most 1y, got {value!r}")
    return float(seconds)


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
