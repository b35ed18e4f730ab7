"""Webhook v4 parsing: times, the zero endsAt, required fields, identity."""

import itertools
from datetime import UTC, datetime

import pytest
from rx_helpers import alert, payload

from voicedrive_receiver.errors import PayloadError
from voicedrive_receiver.identity import notification_identity
from voicedrive_receiver.models import _RFC3339, _from_fields, parse_notification, parse_time


def test_nanoseconds_and_offsets_parse_to_utc() -> None:
    parsed = parse_time("2025-09-01T09:00:00.123456789+09:00", "t")
    assert parsed == datetime(2025, 9, 1, 0, 0, 0, 123456, tzinfo=UTC)


def test_negative_offsets_parse() -> None:
    assert parse_time("2025-08-31T19:30:00-04:30", "t") == datetime(2025, 9, 1, 0, 0, tzinfo=UTC)


def _reading(value: str) -> datetime | str:
    try:
        parsed = parse_time(value, "t")
    except PayloadError:
        return "refused"
    assert parsed is not None
    return parsed


def _field_by_field(value: str) -> datetime | str:
    match = _RFC3339.match(value)
    assert match is not None
    try:
        return _from_fields(match, value, "t")
    except PayloadError:
        return "refused"


# Every RFC 3339 shape, with edge values in each field: the C fast path (fromisoformat, whose
# leniency differs between Python versions) must read each exactly as the field-by-field
# arithmetic does, and refuse what it refuses.
_DATES = ["2025-09-01", "2024-02-29", "2025-02-29", "2025-12-31", "2025-00-10", "2025-09-00"]
_CLOCKS = ["00:00:00", "23:59:59", "24:00:00", "23:60:00", "23:59:60", "12:34:56"]
_SEPARATORS = ["T", "t", " "]
_FRACTIONS = ["", ".5", ".05", ".123", ".1234", ".123456", ".1234567", ".999999999"]
_ZONES = ["Z", "z", "+00:00", "-00:00", "+09:00", "-04:30", "+23:59", "+24:00", "+09:60"]


@pytest.mark.parametrize("date", _DATES)
def test_the_fast_path_reads_every_rfc3339_shape_like_the_exact_one(date: str) -> None:
    for clock, sep, fraction, zone in itertools.product(_CLOCKS, _SEPARATORS, _FRACTIONS, _ZONES):
        value = f"{date}{sep}{clock}{fraction}{zone}"
        if _RFC3339.match(value) is None:
            continue
        assert _reading(value) == _field_by_field(value), value


def test_hour_24_is_refused_whatever_the_python_version() -> None:
    # RFC 3339 time-hour is 00-23. datetime.fromisoformat reads "24:00:00" as the next
    # midnight from Python 3.14 on (gh-102450), so there the fast path would accept it.
    with pytest.raises(PayloadError):
        parse_time("2025-09-01T24:00:00Z", "alerts[0].startsAt")


@pytest.mark.parametrize("value", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"])
def test_a_time_outside_the_datetime_range_in_utc_is_a_payload_error(value: str) -> None:
    # Valid in its own offset, out of range once converted to UTC: an OverflowError escapes.
    with pytest.raises(PayloadError) as caught:
        parse_time(value, "alerts[0].startsAt")
    assert caught.value.field == "alerts[0].startsAt"


def test_a_timestamp_followed_by_a_newline_is_refused() -> None:
    # The pattern ends in "$", which also matches before a final newline.
    with pytest.raises(PayloadError):
        parse_time("2025-09-01T00:00:00Z\n", "alerts[0].startsAt")


def test_digits_outside_ascii_are_refused() -> None:
    # "\d" matches every Unicode decimal digit and int() reads them all.
    with pytest.raises(PayloadError):
        parse_time("\u0662\u0660\u0662\u0665-09-01T00:00:00Z", "alerts[0].startsAt")


def test_zero_end_time_means_not_ended() -> None:
    assert parse_time("0001-01-01T00:00:00Z", "t") is None


def test_a_firing_alert_with_the_zero_end_time_has_no_end() -> None:
    notification = parse_notification(payload(alert(ends_at="0001-01-01T00:00:00Z")))
    assert notification.alerts[0].ends_at is None


@pytest.mark.parametrize(
    "value", ["2025-09-01", "2025-13-01T00:00:00Z", "2025-09-01T00:00:00+24:00", "1756684800", ""]
)
def test_invalid_times_are_payload_errors(value: str) -> None:
    with pytest.raises(PayloadError):
        parse_time(value, "x")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("version"), "version"),
        (lambda p: p.pop("alerts"), "alerts"),
        (lambda p: p.update(alerts=[]), "alerts"),
        (lambda p: p.update(status="burning"), "status"),
        (lambda p: p.update(truncatedAlerts=-1), "truncatedAlerts"),
        (lambda p: p["alerts"][0].pop("labels"), "alerts[0].labels"),
        (lambda p: p["alerts"][0]["labels"].update(x=1), "alerts[0].labels.x"),
        (lambda p: p["alerts"][0].pop("startsAt"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].update(status=None), "alerts[0].status"),
    ],
)
def test_bad_payload_names_the_field(mutate: object, field: str) -> None:
    body = payload()
    mutate(body)  # type: ignore[operator]
    with pytest.raises(PayloadError) as caught:
        parse_notification(body)
    assert caught.value.field == field


def test_identity_ignores_external_url_receiver_and_texts() -> None:
    a = payload(alert(), external_url="http://am-a:9093")
    b = payload(alert(), external_url="http://am-b:9093")
    b["receiver"] = "other"
    b["alerts"][0]["annotations"] = {"summary": "different words"}
    b["commonAnnotations"] = {}
    assert notification_identity(parse_notification(a)) == notification_identity(
        parse_notification(b)
    )


def test_identity_changes_with_status_start_and_fingerprints() -> None:
    base = notification_identity(parse_notification(payload(alert())))
    others = [
        payload(alert(status="resolved", ends_at="2025-09-01T01:00:00Z")),
        payload(alert(starts_at="2025-09-01T10:00:00+09:00")),
        payload(alert(fingerprint="other")),
        payload(alert(), group_key="another-group"),
    ]
    identities = {notification_identity(parse_notification(p)) for p in others}
    assert base not in identities
    assert len(identities) == 4


def test_identity_does_not_depend_on_alert_order() -> None:
    one = payload(alert(fingerprint="a"), alert(fingerprint="b"))
    two = payload(alert(fingerprint="b"), alert(fingerprint="a"))
    assert notification_identity(parse_notification(one)) == notification_identity(
        parse_notification(two)
    )
