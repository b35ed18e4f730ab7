"""The P9 record: a full incident rendered to Markdown matches the golden files."""

import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from voicedrive_receiver.lifecycle.escalation import (
    Close,
    Escalate,
    EscalationPolicy,
    Lifecycle,
    acknowledge,
    apply_step,
    evaluate_sla,
    open_incident,
    resolve,
)
from voicedrive_receiver.lifecycle.records import (
    IncidentRecord,
    RecordFieldError,
    TimelineEvent,
    build_record,
    describe_event,
    render_record,
    validate_fields,
)
from voicedrive_receiver.lifecycle.tokyo import TOKYO

GOLDEN = Path(__file__).parent / "golden"
# Regenerate after an intended template change: UPDATE_GOLDEN=1 pytest ...; then review the diff.
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
POLICY = EscalationPolicy()
T0 = datetime(2025, 9, 2, 10, 0, 0, tzinfo=TOKYO)


def at(minutes: int, seconds: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def full_lifecycle() -> Lifecycle:
    lc = open_incident(T0, 2)
    lc = apply_step(lc, Escalate(2, 3, at(30)))
    lc = acknowledge(lc, at(34, 10), "山田")
    lc = resolve(lc, at(72, 30))
    return apply_step(lc, Close(at(102, 30), 0))


def full_record() -> IncidentRecord:
    timeline = (
        TimelineEvent(T0, "opened", to_level=2),
        TimelineEvent(at(0, 2), "notified", channel="slack", recipient="#phase2-emergency"),
        TimelineEvent(at(0, 3), "notified", channel="email", recipient="tech_lead"),
        TimelineEvent(at(30), "escalated", from_level=2, to_level=3),
        TimelineEvent(at(30, 2), "notified", channel="sms", recipient="hotline"),
        TimelineEvent(at(34, 10), "acknowledged", actor="山田"),
        TimelineEvent(at(50), "note", actor="山田", note="DB接続プールを拡張"),
        TimelineEvent(at(72, 30), "resolved"),
        TimelineEvent(at(102, 30), "closed"),
    )
    return build_record(
        incident_id="inc-20250902-0001",
        summary="API応答時間が500msを超過",
        system="voicedrive",
        component="api",
        lifecycle=full_lifecycle(),
        policy=POLICY,
        now=at(110),
        timeline=timeline,
        started_at=at(-3),
        fields={
            "symptoms": "API応答が平均1.2秒\n一部の通知配信が遅延",
            "impact": "職員向け通知の約30%が遅延",
            "suspected_cause": "DB接続プールの枯渇",
            "root_cause": "夜間バッチと通知配信の同時実行",
            "prevention": "バッチ時間帯の変更と接続プール監視の追加",
        },
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_full_incident_record_in_japanese_matches_golden_file() -> None:
    check_golden("record_full.ja.md", render_record(full_record()))


def test_full_incident_record_in_english_matches_golden_file() -> None:
    check_golden("record_full.en.md", render_record(full_record(), lang="en"))


def test_record_uses_the_protocol_templates_headings() -> None:
    text = render_record(full_record())
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Phase 2緊急事態対応記録",
        "## 基本情報",
        "## 問題詳細",
        "## 対応記録",
        "## 根本原因・対策",
    ]
    for item in ("発生日時", "問題レベル", "影響システム", "症状", "影響範囲", "推定原因"):
        assert f"- {item}: " in text
    for item in ("対応開始", "対応者", "解決時刻", "対応時間", "根本原因", "再発防止策"):
        assert f"- {item}: " in text


def test_record_holds_real_times_not_shell_placeholders() -> None:
    text = render_record(full_record())
    assert "$(date)" not in text
    assert "- 発生日時: 2025-09-02 09:57:00 (火) JST" in text


def test_duration_counts_a_started_minute() -> None:
    # From the alert's start (09:57:00) to the resolution (11:12:30).
    assert full_record().duration_minutes == 76


def test_occurred_at_is_the_alert_start_and_received_at_the_receipt() -> None:
    record = full_record()
    assert (record.occurred_at, record.received_at) == (at(-3), at(0))


def test_open_incident_record_shows_unfilled_fields() -> None:
    record = build_record(
        incident_id="inc-1",
        summary="x",
        system="medical",
        component="api",
        lifecycle=open_incident(T0, 1),
        policy=POLICY,
        now=at(1),
    )
    text = render_record(record)
    assert "- 解決時刻: 未記入" in text
    assert "- 症状: 未記入" in text
    assert "- 影響システム: 医療システム" in text


def test_broken_override_template_falls_back_to_builtin(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "record.md.j2").write_text("{{ no_such_value }}", encoding="utf-8")
    text = render_record(full_record(), override_dir=tmp_path)
    assert text.splitlines()[0] == "# Phase 2緊急事態対応記録"


def test_override_template_is_used_when_it_renders(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "record.md.j2").write_text("記録 {{ id }}\n", encoding="utf-8")
    assert render_record(full_record(), override_dir=tmp_path) == "記録 inc-20250902-0001\n"


def test_record_update_accepts_the_free_text_fields() -> None:
    assert validate_fields({"root_cause": " 設定誤り "}) == {"root_cause": "設定誤り"}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"responder": "x"}, "responder"), ({"impact": 3}, "impact"), (["impact"], "")],
)
def test_record_update_with_a_bad_field_names_it(body: object, field: str) -> None:
    with pytest.raises(RecordFieldError) as caught:
        validate_fields(body)
    assert caught.value.field == field


def configured_timers_record() -> IncidentRecord:
    policy = replace(POLICY, first_response=timedelta(minutes=5), monitoring=timedelta(seconds=45))
    lc = resolve(acknowledge(open_incident(T0, 2), at(6), "山田"), at(20))
    timeline = (
        TimelineEvent(at(5), "sla_breach", note="first_response"),
        TimelineEvent(at(20), "resolved"),
        TimelineEvent(at(20, 45), "closed"),
    )
    return build_record(
        incident_id="inc-2",
        summary="x",
        system="voicedrive",
        component="api",
        lifecycle=lc,
        policy=policy,
        now=at(21),
        timeline=timeline,
    )


def test_record_names_the_configured_watch_and_first_response_target() -> None:
    text = render_record(configured_timers_record())
    assert "SLA超過: 初動5分以内" in text
    assert "解決（45秒間の監視開始）" in text
    assert "45秒間の監視終了・再発なし: クローズ" in text
    assert "初動（5分以内）" in text
    assert "15分" not in text
    assert "30分" not in text


def test_english_record_names_the_configured_watch_and_first_response_target() -> None:
    text = render_record(configured_timers_record(), lang="en")
    assert "SLA breached: first response within 5 min" in text
    assert "Resolved (watch of 45 s started)" in text
    assert "Watch of 45 s over without recurrence: closed" in text


def configured_deadline_record() -> IncidentRecord:
    levels = {**POLICY.levels, 3: replace(POLICY.level(3), response_deadline=timedelta(minutes=45))}
    return replace(
        full_record(), sla=evaluate_sla(full_lifecycle(), replace(POLICY, levels=levels), at(110))
    )


def test_record_states_the_configured_response_deadline_that_binds() -> None:
    # Level 3 was reached at 10:30; its configured 45 min ends before Level 2's 2 h (12:00).
    text = render_record(configured_deadline_record())
    assert "- 対応期限 2025-09-02 11:15:00 (火) JST（Level 3 到達から45分）: 達成" in text


def test_english_record_states_the_configured_response_deadline_that_binds() -> None:
    text = render_record(configured_deadline_record(), lang="en")
    assert (
        "- Response deadline 2025-09-02 11:15:00 (Tue) JST (45 min from reaching Level 3)" in text
    )


def test_held_step_names_its_release_and_the_digest_step_its_channel() -> None:
    # Tuesday 10:00 to Wednesday 08:00.
    until = at(22 * 60)
    held = TimelineEvent(at(0), "held", channel="email", recipient="medical_ops", until=until)
    digested = TimelineEvent(until, "digested", channel="email", recipient="medical_ops")
    assert describe_event(held) == (
        "営業時間外のため保留: email → medical_ops"
        "（2025-09-03 08:00:00 (水) JST の営業開始時にまとめて送信）"
    )
    assert describe_event(digested, "en") == (
        "Held message sent in the business-hours digest via email → medical_ops"
    )
