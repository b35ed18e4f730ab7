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


@pytest.mark.parametrize(
    ("seconds", "ja", "en"),
    [
        (4 * 3600, "4時間", "4 h"),
        (5400, "1時間30分", "1 h 30 min"),
        (3600 + 15, "1時間15秒", "1 h 15 s"),
        (1800, "30分", "30 min"),
        (45, "45秒", "45 s"),
    ],
)
def test_span_with_hours_reads_as_p2_writes_deadlines(seconds: int, ja: str, en: str) -> None:
    assert format_span(float(seconds), "ja", hours=True) == ja
    assert format_span(timedelta(seconds=seconds), "en", hours=True) == en


def test_span_without_hours_keeps_counting_minutes() -> None:
    assert format_span(timedelta(hours=4), "ja") == "240分"
