"""Waits and spans in user-facing texts: seconds under a minute, minutes and seconds above."""

from datetime import timedelta

import pytest

from voicedrive_receiver.lifecycle.tokyo import format_span


@pytest.mark.parametrize(
    ("seconds", "ja", "en"),
    [
        (45, "45秒", "45 s"),
        (90, "1分30秒", "1 min 30 s"),
        (1800, "30分", "30 min"),
        (0, "0秒", "0 s"),
    ],
)
def test_span_reads_in_seconds_under_a_minute_and_minutes_with_seconds_above(
    seconds: int, ja: str, en: str
) -> None:
    assert format_span(timedelta(seconds=seconds), "ja") == ja
    assert format_span(float(seconds), "en") == en


def test_missing_span_is_the_empty_text() -> None:
    assert format_span(None, "ja", empty="未記入") == "未記入"
