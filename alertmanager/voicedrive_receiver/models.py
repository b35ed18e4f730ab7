"""Typed Alertmanager webhook (version 4) payloads, parsed once at the edge.

Alertmanager writes ``endsAt`` as ``0001-01-01T00:00:00Z`` for alerts that have not ended; that
value is kept as ``None`` and never converted to a real instant (year 1 would overflow any
arithmetic with it).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from voicedrive_common.jsonbody import JsonBodyError, parse_json_bytes
from voicedrive_receiver.errors import PayloadError

Status = Literal["firing", "resolved"]

_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"
# ASCII digits only (``\d`` would take any script's), and \Z: ``$`` also matches before a
# final newline.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))\Z"
)


def parse_time(value: object, field: str) -> datetime | None:
    """An RFC 3339 timestamp as aware UTC (sub-microsecond digits dropped); zero time is None."""
    if not isinstance(value, str):
        raise PayloadError(field, "expected an RFC 3339 timestamp string")
    if value.startswith(_ZERO_TIME_PREFIX):
        return None
    match = _RFC3339.match(value)
    if match is None:
        raise PayloadError(field, f"invalid RFC 3339 timestamp {value[:40]!r}")
    if match.group(4) == "24":
        # RFC 3339 hours end at 23; fromisoformat reads 24:00 as the next midnight (3.14+).
        return _from_fields(match, value, field)
    try:
        # The shape is RFC 3339 (checked above), which fromisoformat reads in C, truncating
        # digits past microseconds, about 8x faster than the arithmetic below; that remains
        # for what it refuses (a lowercase "t" or "z") and for the error text of an impossible
        # date or time.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return _from_fields(match, value, field)
    return _utc(parsed, value, field)


def _utc(when: datetime, value: str, field: str) -> datetime:
    try:
        return when.astimezone(UTC)
    except OverflowError:  # year 1 or 9999, pushed past the range by its offset
        raise PayloadError(field, f"timestamp {value[:40]!r} is out of range in UTC") from None


def _from_fields(match: re.Match[str], value: str, field: str) -> datetime:
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    # Go writes up to nanoseconds; datetime holds microseconds, so digits 7-9 are dropped.
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    try:
        if match.group(8):
            tz: timezone = UTC
        else:
            sign = -1 if match.group(9) == "-" else 1
            offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
            tz = timezone(sign * offset)  # refuses a day or more
        when = datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    except ValueError as exc:
        raise PayloadError(field, f"invalid timestamp {value[:40]!r}: {exc}") from None
    return _utc(when, value, field)


@dataclass(frozen=True)
class Alert:
    """One alert of a notification."""

    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    fingerprint: str


@dataclass(frozen=True)
class Notification:
    """One webhook POST from Alertmanager: a group of alerts."""

    version: str
    group_key: str
    truncated_alerts: int
    status: Status
    receiver: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    alerts: tuple[Alert, ...]

    def firing(self) -> tuple[Alert, ...]:
        """The alerts of this notification that are still firing."""
        return tuple(a for a in self.alerts if a.status == "firing")


# Timestamps outside [2000, now + a day] are typos or broken clocks, and break templates/arithmetic.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)


def parse_notification(data: Any, *, now: datetime | None = None) -> Notification:
    """Validate decoded JSON into a Notification; PayloadError names the first bad field.

    With ``now``, timestamps must lie between 2000 and a day after it. The group ``status`` is
    derived from the alerts (firing when any is): trusting a "resolved" group that still holds a
    firing alert would drop that alert.
    """
    if not isinstance(data, dict):
        raise PayloadError("", "payload must be a JSON object")
    version = _req_str(data, "version", "")
    if version != "4":
        raise PayloadError("version", f"unsupported webhook version {version[:20]!r}, expected '4'")
    alerts_raw = _req(data, "alerts", "")
    if not isinstance(alerts_raw, list):
        raise PayloadError("alerts", "expected a list")
    if not alerts_raw:
        raise PayloadError("alerts", "must not be empty")
    truncated = data.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise PayloadError("truncatedAlerts", "expected a non-negative integer")
    _status(data, "")  # still validated: a garbled value is a broken sender
    alerts = tuple(_alert(item, f"alerts[{i}]", now) for i, item in enumerate(alerts_raw))
    status: Status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    return Notification(
        version=version,
        group_key=_req_str(data, "groupKey", ""),
        truncated_alerts=truncated,
        status=status,
        receiver=_opt_str(data, "receiver", ""),
        group_labels=_str_map(data, "groupLabels", ""),
        common_labels=_str_map(data, "commonLabels", ""),
        common_annotations=_str_map(data, "commonAnnotations", ""),
        external_url=_opt_str(data, "externalURL", ""),
        alerts=alerts,
    )


def _in_range(when: datetime | None, field: str, now: datetime | None) -> None:
    if when is None or now is None:
        return
    if when < EARLIEST:
        raise PayloadError(field, f"{when.isoformat()} is before {EARLIEST.year}")
    if when > now + FUTURE_SLACK:
        raise PayloadError(field, f"{when.isoformat()} is more than a day in the future")


def _alert(item: Any, path: str, now: datetime | None = None) -> Alert:
    if not isinstance(item, dict):
        raise PayloadError(path, "expected an object")
    starts = parse_time(_req(item, "startsAt", path), f"{path}.startsAt")
    if starts is None:
        raise PayloadError(f"{path}.startsAt", "must be a real time, not the zero time")
    ends_raw = item.get("endsAt")
    ends = None if ends_raw in (None, "") else parse_time(ends_raw, f"{path}.endsAt")
    _in_range(starts, f"{path}.startsAt", now)
    _in_range(ends, f"{path}.endsAt", now)
    fingerprint = _req_str(item, "fingerprint", path)
    if not fingerprint:
        raise PayloadError(f"{path}.fingerprint", "must not be empty")
    return Alert(
        status=_status(item, path),
        labels=_str_map(item, "labels", path, required=True),
        annotations=_str_map(item, "annotations", path),
        starts_at=starts,
        ends_at=ends,
        generator_url=_opt_str(item, "generatorURL", path),
        fingerprint=fingerprint,
    )


def _sub(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _req(data: dict[str, Any], key: str, path: str) -> Any:
    if key not in data or data[key] is None:
        raise PayloadError(_sub(path, key), "is required")
    return data[key]


def _text(value: str) -> str:
    # PostgreSQL TEXT cannot hold U+0000 (JSON can, as \u0000): replaced, so the alert still
    # pages on every store instead of being refused there after the 2xx.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _req_str(data: dict[str, Any], key: str, path: str) -> str:
    value = _req(data, key, path)
    if not isinstance(value, str):
        raise PayloadError(_sub(path, key), "expected a string")
    return _text(value)


def _opt_str(data: dict[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(_sub(path, key), "expected a string")
    return _text(value)


def _status(data: dict[str, Any], path: str) -> Status:
    value = _req_str(data, "status", path)
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise PayloadError(_sub(path, "status"), f"must be 'firing' or 'resolved', got {value[:20]!r}")


def _str_map(
    data: dict[str, Any], key: str, path: str, *, required: bool = False
) -> dict[str, str]:
    value = _req(data, key, path) if required else data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(_sub(path, key), "expected an object of strings")
    try:
        # Checks every value in C (the webhook's hot path); the loop below names a bad one.
        values = "".join(value.values())
    except TypeError:
        for name, item in value.items():
            if not isinstance(item, str):
                raise PayloadError(f"{_sub(path, key)}.{name}", "expected a string") from None
        raise
    if "\x00" in values or "\x00" in "".join(value):
        return {_text(name): _text(item) for name, item in value.items()}
    return dict(value)


def parse_body(body: bytes, *, now: datetime | None = None) -> Notification:
    """Decode and validate a webhook body; PayloadError says what is wrong and where."""
    try:
        data = parse_json_bytes(body)
    except JsonBodyError as exc:
        raise PayloadError("", exc.reason) from None
    return parse_notification(data, now=now)
