"""parse_duration follows Prometheus' duration syntax and refuses values no config means."""

import pytest

from voicedrive_common.durations import parse_duration
from voicedrive_common.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("1m30s500ms", 90.5),
        ("2w1d", 15 * 86400.0),
        ("1y", 365 * 86400.0),
        ("0", 0.0),
        ("0s", 0.0),
    ],
)
def test_prometheus_durations_are_parsed_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_number_is_rejected_naming_the_key(value: float) -> None:
    with pytest.raises(ConfigError, match=r"^api\.interval: duration must be finite"):
        parse_duration(value, "api.interval")


def test_value_beyond_one_year_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^k: duration must be at most 1y"):
        parse_duration("99999999999999999999h", "k")


def test_one_year_and_a_second_is_rejected() -> None:
    with pytest.raises(ConfigError, match="at most 1y"):
        parse_duration("1y1s", "k")


@pytest.mark.parametrize("value", ["30", 30, 1.5])
def test_bare_number_without_unit_is_rejected(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^k: "):
        parse_duration(value, "k")


def test_fractional_count_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"invalid duration '1\.5m'"):
        parse_duration("1.5m", "k")


def test_units_out_of_order_are_rejected() -> None:
    with pytest.raises(ConfigError, match="invalid duration '1s1h'"):
        parse_duration("1s1h", "k")


def test_repeated_unit_is_rejected() -> None:
    with pytest.raises(ConfigError, match="invalid duration '1h1h'"):
        parse_duration("1h1h", "k")


def test_negative_duration_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_duration("-5s", "k")
