"""Business hours of the medical system team and the hold policy (P1)."""

from datetime import datetime

import pytest

from voicedrive_common.confload import parse_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.lifecycle.business_hours import (
    BusinessHours,
    HeldItem,
    HoldPolicy,
    decide_hold,
    due_digests,
    parse_hold_policy,
)
from voicedrive_receiver.lifecycle.tokyo import TOKYO

HOURS = BusinessHours()
POLICY = HoldPolicy()


def jst(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO)


def test_friday_one_second_before_1800_is_inside() -> None:
    assert HOURS.is_open(jst(2025, 9, 5, 17, 59, 59))


def test_friday_1800_exactly_is_outside() -> None:
    assert not HOURS.is_open(jst(2025, 9, 5, 18, 0, 0))


def test_monday_one_second_before_0800_is_outside() -> None:
    assert not HOURS.is_open(jst(2025, 9, 8, 7, 59, 59))


def test_monday_0800_exactly_is_inside() -> None:
    assert HOURS.is_open(jst(2025, 9, 8, 8, 0, 0))


def test_japanese_public_holiday_on_a_monday_is_closed() -> None:
    # 2025-09-15 is 敬老の日 (Respect for the Aged Day), from the holidays library.
    assert HOURS.holiday_name(jst(2025, 9, 15).date()) is not None
    assert not HOURS.is_open(jst(2025, 9, 15, 10, 0))


def test_saturday_is_closed() -> None:
    assert not HOURS.is_open(jst(2025, 9, 6, 10, 0))


def test_utc_instant_is_judged_in_tokyo() -> None:
    # 23:30 UTC on Sunday 2025-09-07 is 08:30 on Monday in Tokyo.
    assert HOURS.is_open(datetime.fromisoformat("2025-09-07T23:30:00+00:00"))


def test_next_business_start_after_friday_evening_skips_weekend_and_holiday() -> None:
    # Fri 09-12 18:00 -> Sat, Sun, Mon 09-15 (holiday) -> Tue 09-16 08:00.
    assert HOURS.next_business_start(jst(2025, 9, 12, 18, 0)) == jst(2025, 9, 16, 8, 0)


def test_next_business_start_at_an_opening_is_that_opening() -> None:
    assert HOURS.next_business_start(jst(2025, 9, 8, 8, 0)) == jst(2025, 9, 8, 8, 0)


def test_next_business_start_during_hours_is_the_next_day() -> None:
    assert HOURS.next_business_start(jst(2025, 9, 8, 8, 0, 1)) == jst(2025, 9, 9, 8, 0)


def test_level_2_for_medical_team_at_night_is_held_until_next_business_start() -> None:
    decision = decide_hold(POLICY, team="medical", level=2, at=jst(2025, 9, 5, 18, 0))
    assert decision.held
    assert decision.release_at == jst(2025, 9, 8, 8, 0)
    assert "2025-09-08 08:00:00 (月) JST" in decision.text()


def test_level_3_for_medical_team_at_night_goes_at_once() -> None:
    decision = decide_hold(POLICY, team="medical", level=3, at=jst(2025, 9, 5, 23, 0))
    assert not decision.held


def test_voicedrive_team_is_never_held() -> None:
    decision = decide_hold(POLICY, team="voicedrive", level=1, at=jst(2025, 9, 6, 3, 0))
    assert not decision.held


def test_level_1_inside_business_hours_goes_at_once() -> None:
    decision = decide_hold(POLICY, team="medical", level=1, at=jst(2025, 9, 5, 17, 59, 59))
    assert not decision.held


def test_items_held_over_the_weekend_go_out_as_one_digest_at_the_opening() -> None:
    release = jst(2025, 9, 8, 8, 0)
    items = [
        HeldItem("inc-2", 2, "API応答遅延", jst(2025, 9, 6, 9, 0), release, "medical"),
        HeldItem("inc-1", 1, "UI表示問題", jst(2025, 9, 5, 19, 0), release, "medical"),
    ]
    assert due_digests(items, jst(2025, 9, 8, 7, 59, 59)) == []
    (digest,) = due_digests(items, release)
    assert [i.incident_id for i in digest.items] == ["inc-1", "inc-2"]
    assert digest.key == "digest:medical:2025-09-08T08:00"
    assert digest.text().splitlines()[0] == "営業時間外に保留した通知（2件）:"


def test_hold_policy_config_reads_hours_and_levels() -> None:
    policy = parse_hold_policy(
        parse_yaml('start: "09:00"\nend: "17:00"\nhold_up_to_level: 1\nclosed_dates: [2025-09-04]')
    )
    assert policy.hours.is_open(jst(2025, 9, 3, 9, 0))
    assert not policy.hours.is_open(jst(2025, 9, 3, 17, 0))
    assert not policy.hours.is_open(jst(2025, 9, 4, 10, 0))
    assert not decide_hold(policy, team="medical", level=2, at=jst(2025, 9, 3, 20, 0)).held


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("start: 18:00", "quoted"),
        ('start: "18:00"\nend: "08:00"', "end: must be after start"),
        ("weekdays: [monday]", "weekdays"),
        ("holidays: XX", "no holiday calendar"),
        ("hold_up_to_level: 5", "at most 4"),
        ("team: medical\nteams: [x]", "unknown key 'teams'"),
    ],
)
def test_bad_business_hours_config_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_hold_policy(parse_yaml(text))
