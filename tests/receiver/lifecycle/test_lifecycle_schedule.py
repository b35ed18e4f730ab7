"""On-call schedule: shifts, who is on duty, uncovered intervals, the Phase 2 example."""

from datetime import date, datetime
from pathlib import Path

import pytest

from voicedrive_common.confload import load_yaml, parse_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.lifecycle.schedule import (
    Interval,
    Schedule,
    ScheduleError,
    format_gap_lines,
    parse_schedule,
    range_from_dates,
)
from voicedrive_receiver.lifecycle.tokyo import TOKYO

PHASE2 = Path(__file__).resolve().parents[3] / "alertmanager" / "schedule.phase2.yml"


def jst(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO)


def schedule(text: str, **kwargs: object) -> Schedule:
    return parse_schedule(parse_yaml(text), **kwargs)  # type: ignore[arg-type]


NIGHT = """
fallback: {contacts: [hotline]}
shifts:
  - {date: 2025-09-01, start: "20:00", end: "08:00", team: voicedrive, contacts: [oncall]}
"""


@pytest.fixture(scope="module")
def phase2() -> Schedule:
    return parse_schedule(load_yaml(PHASE2))


def test_phase2_schedule_reports_every_gap_the_document_leaves(phase2: Schedule) -> None:
    assert format_gap_lines(phase2.coverage_gaps()) == [
        "2025-09-01 (月) 12:00-13:00",
        "2025-09-01 (月) 17:00-18:00",
        "2025-09-02 (火) 08:00-09:00",
        "2025-09-02 (火) 12:00-13:00",
        "2025-09-03 (水) 12:00-13:00",
    ]


def test_phase2_span_runs_from_first_shift_to_end_of_last_day(phase2: Schedule) -> None:
    assert phase2.own_span() == Interval(jst(2025, 9, 1, 8, 0), jst(2025, 9, 6, 0, 0))


def test_weekdays_in_gap_lines_are_computed_from_dates_in_english_too(phase2: Schedule) -> None:
    lines = format_gap_lines(phase2.coverage_gaps(), "en")
    assert lines[0] == "2025-09-01 (Mon) 12:00-13:00"
    assert lines[-1] == "2025-09-03 (Wed) 12:00-13:00"


def test_phase2_schedule_file_types_no_weekday_labels() -> None:
    text = PHASE2.read_text(encoding="utf-8")
    for label in ("（日）", "（月-火）", "（水-木）", "weekdays:"):
        assert label not in text


def test_shift_crossing_midnight_is_on_duty_until_its_end_next_morning() -> None:
    s = schedule(NIGHT)
    assert s.on_duty(jst(2025, 9, 1, 19, 59, 59), "voicedrive") == []
    assert s.on_duty(jst(2025, 9, 1, 20, 0), "voicedrive") == ["oncall"]
    assert s.on_duty(jst(2025, 9, 2, 0, 0), "voicedrive") == ["oncall"]
    assert s.on_duty(jst(2025, 9, 2, 7, 59, 59), "voicedrive") == ["oncall"]
    assert s.on_duty(jst(2025, 9, 2, 8, 0), "voicedrive") == []


def test_utc_instants_are_read_in_asia_tokyo() -> None:
    s = schedule(NIGHT)
    # 2025-09-01 11:00 UTC is 20:00 in Tokyo.
    assert s.on_duty(datetime.fromisoformat("2025-09-01T11:00:00+00:00"), "voicedrive") == [
        "oncall"
    ]


def test_on_duty_picks_team_and_role() -> None:
    s = schedule(
        """
fallback: {contacts: [hotline]}
shifts:
  - {date: 2025-09-02, start: "09:00", end: "17:00", team: voicedrive, roles: [infrastructure],
     contacts: [infra]}
  - {date: 2025-09-02, start: "09:00", end: "17:00", team: voicedrive, contacts: [lead]}
  - {date: 2025-09-02, start: "09:00", end: "17:00", team: medical, contacts: [medical_lead]}
"""
    )
    at = jst(2025, 9, 2, 10, 0)
    assert s.on_duty(at, "voicedrive", "infrastructure") == ["infra", "lead"]
    assert s.on_duty(at, "voicedrive", "frontend") == ["lead"]
    assert s.on_duty(at, "medical", "data") == ["medical_lead"]


def test_uncovered_instant_goes_to_fallback_and_states_the_gap(phase2: Schedule) -> None:
    duty = phase2.recipients(jst(2025, 9, 2, 8, 30), "voicedrive")
    assert duty.gap
    assert duty.contacts == ("hotline",)
    assert duty.gap_interval == Interval(jst(2025, 9, 2, 8, 0), jst(2025, 9, 2, 9, 0))
    text = duty.gap_text()
    assert "2025-09-02 (火) 08:00-09:00" in text
    assert "24時間緊急ホットライン" in text
    assert "08:00-09:00" in duty.gap_text("en")


def test_covered_instant_has_no_gap_text(phase2: Schedule) -> None:
    duty = phase2.recipients(jst(2025, 9, 2, 3, 0), "voicedrive")
    assert duty.contacts == ("tech_lead", "infra_engineer")
    assert not duty.gap
    assert duty.gap_text() == ""


def test_gap_crossing_midnight_is_listed_per_day() -> None:
    s = schedule(
        """
fallback: {contacts: [hotline]}
span: {start: 2025-09-01, end: 2025-09-03}
shifts:
  - {dates: {from: 2025-09-01, to: 2025-09-02}, start: "08:00", end: "20:00",
     team: voicedrive, contacts: [day]}
"""
    )
    assert format_gap_lines(s.coverage_gaps()) == [
        "2025-09-01 (月) 00:00-08:00",
        "2025-09-01 (月) 20:00-24:00",
        "2025-09-02 (火) 00:00-08:00",
        "2025-09-02 (火) 20:00-24:00",
    ]


def test_weekday_shifts_need_a_range_for_the_coverage_check() -> None:
    s = schedule(
        """
fallback: {contacts: [hotline]}
shifts:
  - {weekdays: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00", team: medical,
     contacts: [medical_lead]}
"""
    )
    with pytest.raises(ScheduleError, match="--from and --to"):
        range_from_dates(None, None, s)
    window = range_from_dates(date(2025, 9, 5), date(2025, 9, 6), s)
    assert format_gap_lines(s.coverage_gaps(window)) == [
        "2025-09-05 (金) 00:00-08:00",
        "2025-09-05 (金) 18:00-24:00",
        "2025-09-06 (土) 00:00-24:00",
    ]


def test_from_and_to_dates_limit_the_check_to_those_days(phase2: Schedule) -> None:
    window = range_from_dates(date(2025, 9, 2), date(2025, 9, 2), phase2)
    assert format_gap_lines(phase2.coverage_gaps(window)) == [
        "2025-09-02 (火) 08:00-09:00",
        "2025-09-02 (火) 12:00-13:00",
    ]


def test_shift_ending_at_2400_ends_at_next_midnight() -> None:
    s = schedule(
        """
fallback: {contacts: [hotline]}
shifts:
  - {date: 2025-09-01, start: "18:00", end: "24:00", team: voicedrive, contacts: [eve]}
"""
    )
    assert s.on_duty(jst(2025, 9, 1, 23, 59, 59), "voicedrive") == ["eve"]
    assert s.on_duty(jst(2025, 9, 2, 0, 0), "voicedrive") == []


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        ('{date: 2025-09-01, start: 18:00, end: "20:00", team: a, contacts: [x]}', "quoted"),
        ('{date: 2025-09-01, start: "8:00", end: "20:00", team: a, contacts: [x]}', "HH:MM"),
        ('{date: 2025-09-01, start: "25:00", end: "20:00", team: a, contacts: [x]}', "no such"),
        ('{date: 2025-09-01, start: "08:00", end: "08:00", team: a, contacts: [x]}', "24:00"),
        ('{start: "08:00", end: "12:00", team: a, contacts: [x]}', "needs date"),
        ('{date: 2025-09-01, start: "08:00", end: "12:00", team: a, contacts: []}', "at least"),
        ('{date: 2025-09-01, start: "08:00", end: "12:00", team: a, contacts: [x], who: y}', "who"),
        (
            '{date: 2025-09-01, weekdays: [lun], start: "08:00", end: "12:00", team: a,'
            " contacts: [x]}",
            "weekdays",
        ),
        (
            '{date: 2025-09-01, start: "2025-09-01 08:00", end: "2025-09-01 12:00", team: a,'
            " contacts: [x]}",
            "no date selection",
        ),
    ],
)
def test_bad_shift_is_an_error_naming_the_shift(shift: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        schedule(f"fallback: {{contacts: [hotline]}}\nshifts:\n  - {shift}\n")
    assert caught.value.path.startswith("shifts[0]")


def test_unknown_contact_key_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"shifts\[0\]\.contacts\[1\]: unknown contact 'ghost'"):
        schedule(
            """
fallback: {contacts: [hotline]}
shifts:
  - {date: 2025-09-01, start: "08:00", end: "12:00", team: a, contacts: [lead, ghost]}
""",
            known_contacts=("hotline", "lead"),
        )


def test_missing_fallback_is_an_error() -> None:
    with pytest.raises(ConfigError, match="fallback: is required"):
        schedule(
            'shifts: [{date: 2025-09-01, start: "08:00", end: "12:00", team: a, contacts: [x]}]'
        )


def test_a_schedule_whose_span_is_over_says_when_it_ended(phase2: Schedule) -> None:
    assert phase2.ended(jst(2026, 12, 4, 9, 0)) == jst(2025, 9, 6, 0, 0)


def test_a_schedule_still_within_its_span_has_not_ended(phase2: Schedule) -> None:
    assert phase2.ended(jst(2025, 9, 5, 23, 59)) is None


def test_a_schedule_of_recurring_shifts_without_an_end_never_ends() -> None:
    s = schedule(
        """
fallback: {contacts: [hotline]}
shifts:
  - {weekdays: [mon], start: "08:00", end: "18:00", team: medical, contacts: [medical_lead]}
"""
    )
    assert s.ended(jst(2030, 1, 1)) is None
