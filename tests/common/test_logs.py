"""Log lines: the reserved keys ts, level, logger and msg always mean what they say."""

import io
import json
import logging
import re

import pytest

from voicedrive_common.logs import JsonFormatter, LogfmtFormatter


def record(extra: dict[str, object]) -> logging.LogRecord:
    return logging.getLogger("t").makeRecord(
        "t", logging.INFO, __file__, 1, "notification stored", (), None, extra=extra
    )


def formatted(formatter: logging.Formatter, extra: dict[str, object]) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.handle(record(extra))
    return stream.getvalue().strip()


def logfmt_fields(line: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))


def test_logfmt_extra_level_does_not_replace_the_log_level() -> None:
    fields = logfmt_fields(formatted(LogfmtFormatter(), {"level": 3}))
    assert fields["level"] == "info"
    assert fields["extra_level"] == "3"


def test_json_extra_level_does_not_replace_the_log_level() -> None:
    fields = json.loads(formatted(JsonFormatter(), {"level": 3}))
    assert fields["level"] == "info"
    assert fields["extra_level"] == 3


@pytest.mark.parametrize("key", ["ts", "logger"])
def test_json_extra_ts_and_logger_are_kept_apart(key: str) -> None:
    fields = json.loads(formatted(JsonFormatter(), {key: "x"}))
    assert fields[key] != "x"
    assert fields[f"extra_{key}"] == "x"


def test_other_extra_fields_keep_their_names() -> None:
    fields = logfmt_fields(formatted(LogfmtFormatter(), {"alert_level": 3}))
    assert fields["alert_level"] == "3"
    assert "extra_alert_level" not in fields
