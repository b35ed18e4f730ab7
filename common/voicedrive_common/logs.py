"""Logging set-up in the Prometheus style (``--log.level``, ``--log.format logfmt|json``).

Every resolved secret is registered here and scrubbed from any record before it is written:
a second line of defence behind "never format a secret into a message".

Every line starts with the reserved keys ``ts``, ``level``, ``logger`` and ``msg``. An ``extra=``
field with one of those names never replaces them (level filtering would break): it is written
as ``extra_<name>`` instead, e.g. ``extra={"level": 3}`` gives ``extra_level=3``. Callers should
use a clear name of their own (``alert_level``) rather than rely on that.
"""

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")

_secrets: set[str] = set()
_lock = threading.Lock()
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
RESERVED = ("ts", "level", "logger", "msg")


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line (values shorter than 4 chars would scrub too much)."""
    if len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": {"WARNING": "warn", "CRITICAL": "error"}.get(
            record.levelname, record.levelname.lower()
        ),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STD_ATTRS and not key.startswith("_"):
            fields[f"extra_{key}" if key in RESERVED else key] = value
    if record.exc_info:
        fields["err"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=x msg="..." key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = redact(str(value))
            if text == "" or any(c in text for c in ' ="\n\t'):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: redact(v) if isinstance(v, str) else v for k, v in _fields(record).items()}
        return redact(json.dumps(fields, ensure_ascii=False, default=str))


def setup_logging(level: str = "info", fmt: str = "logfmt", stream: Any = None) -> None:
    """Configure the root logger; ``level`` in LEVELS, ``fmt`` in FORMATS."""
    if level not in LEVELS:
        raise ValueError(f"--log.level must be one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"--log.format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": logging.WARNING}.get(level, level.upper()))
    # aiohttp's access log is noise at info for a scrape every few seconds.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
