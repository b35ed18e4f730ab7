"""The P9 daily check: the protocol's five daily items, built from data passed in.

The checklist items are the document's own (担当者待機状況確認, 監視システム正常動作確認,
緊急連絡手段疎通確認, バックアップデータ最新性確認, 前日問題・対応状況レビュー). This module does
no I/O: the receiver gathers the inputs (schedule, store, Prometheus) and renders the result.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any, Literal

import jinja2

from voicedrive_receiver.lifecycle.escalation import SlaResult
from voicedrive_receiver.lifecycle.records import BUILTIN_DIR
from voicedrive_receiver.lifecycle.schedule import (
    Interval,
    Schedule,
    day_interval,
    format_gap_lines,
)
from voicedrive_receiver.lifecycle.tokyo import (
    LANGS,
    Lang,
    format_span,
    format_time,
    to_tokyo,
    weekday_name,
)
from voicedrive_receiver.safetext import CONTINUATION, continued

ItemKey = Literal["duty", "monitoring", "channels", "backup", "review"]

_TITLES: dict[Lang, dict[ItemKey, str]] = {
    "ja": {
        "duty": "担当者待機状況確認",
        "monitoring": "監視システム正常動作確認",
        "channels": "緊急連絡手段疎通確認",
        "backup": "バックアップデータ最新性確認",
        "review": "前日問題・対応状況レビュー",
    },
    "en": {
        "duty": "On-duty staff confirmed",
        "monitoring": "Monitoring system working",
        "channels": "Every contact channel gets through",
        "backup": "Backup is fresh",
        "review": "Yesterday's problems reviewed",
    },
}


@dataclass(frozen=True)
class ChannelStatus:
    """What the store knows about one configured channel."""

    name: str
    kind: str
    last_success: datetime | None
    last_failure: datetime | None = None
    # Result of an on-demand test message (None when no test was sent).
    test_ok: bool | None = None
    test_detail: str = ""


@dataclass(frozen=True)
class IncidentSummary:
    """One incident for the review of the previous day."""

    incident_id: str
    summary: str
    level: int
    opened_at: datetime
    resolved_at: datetime | None
    state: str
    sla: SlaResult | None = None


@dataclass(frozen=True)
class DailyCheckInputs:
    """Everything the daily check looks at, gathered by the caller."""

    now: datetime
    schedule: Schedule | None
    watchdog_last_seen: datetime | None
    watchdog_max_age: timedelta
    channels: tuple[ChannelStatus, ...]
    channel_max_age: timedelta
    backup_age_seconds: float | None
    backup_max_age: timedelta
    incidents: tuple[IncidentSummary, ...]
    # Why the backup age is unknown (Prometheus unreachable, no series), when it is.
    backup_error: str = ""


@dataclass(frozen=True)
class CheckItem:
    """One checklist line: passed or not, with the details that show why."""

    key: ItemKey
    title: str
    ok: bool
    details: tuple[str, ...]
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DailyReport:
    """The whole check for one Asia/Tokyo day."""

    day: date
    generated_at: datetime
    lang: Lang
    items: tuple[CheckItem, ...]

    @property
    def ok(self) -> bool:
        """Every item passed."""
        return all(item.ok for item in self.items)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``GET /api/daily-check``)."""
        return {
            "date": self.day.isoformat(),
            "generated_at": self.generated_at.isoformat(),
            "ok": self.ok,
            "items": [
                {
                    "key": i.key,
                    "title": i.title,
                    "ok": i.ok,
                    "details": list(i.details),
                    "data": dict(i.data),
                }
                for i in self.items
            ],
        }


def build_daily_check(inputs: DailyCheckInputs, *, lang: Lang = "ja") -> DailyReport:
    """The daily report for the Asia/Tokyo day of ``inputs.now``."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}")
    today = to_tokyo(inputs.now).date()
    items = (
        _duty(inputs, today, lang),
        _monitoring(inputs, lang),
        _channels(inputs, lang),
        _backup(inputs, lang),
        _review(inputs, today, lang),
    )
    return DailyReport(day=today, generated_at=inputs.now, lang=lang, items=items)


def _item(key: ItemKey, lang: Lang, ok: bool, details: list[str], **data: Any) -> CheckItem:
    return CheckItem(key, _TITLES[lang][key], ok, tuple(details), data)


def _ago(now: datetime, then: datetime, lang: Lang) -> str:
    span = format_span(now - then, lang)
    return f"{span} ago" if lang == "en" else f"{span}前"


def _shift_end(end: datetime, today: date, lang: Lang) -> str:
    """The end of a shift shown today: ``24:00`` at the coming midnight, as schedule check does."""
    tomorrow = today + timedelta(days=1)
    if end.date() == today:
        return f"{end:%H:%M}"
    if end.date() == tomorrow and end.time() == time(0):
        return "24:00"
    if end.date() == tomorrow:
        return f"{end:%H:%M} (+1d)" if lang == "en" else f"翌{end:%H:%M}"
    return f"{end:%m-%d %H:%M}"


def _duty(inputs: DailyCheckInputs, today: date, lang: Lang) -> CheckItem:
    en = lang == "en"
    schedule = inputs.schedule
    if schedule is None:
        text = "No on-call schedule is configured." if en else "当番表が設定されていません。"
        return _item("duty", lang, False, [text], roster=[], gaps=[])
    window = day_interval(today)
    span = schedule.own_span()
    if span is not None:
        window = Interval(max(window.start, span.start), min(window.end, span.end))
    roster = schedule.roster(today)
    lines = []
    for active in roster:
        start = to_tokyo(active.interval.start)
        end = to_tokyo(active.interval.end)
        end_text = _shift_end(end, today, lang)
        start_text = f"{start:%H:%M}" if start.date() == today else f"{start:%m-%d %H:%M}"
        who = ", ".join(active.shift.contacts)
        lines.append(f"{start_text}-{end_text} {active.shift.name} ({active.shift.team}: {who})")
    if window.start >= window.end:
        text = "Today is outside the schedule's span." if en else "本日は当番表の期間外です。"
        return _item("duty", lang, False, [*lines, text], roster=lines, gaps=[])
    gaps = format_gap_lines(schedule.coverage_gaps(window), lang)
    for gap in gaps:
        lines.append(f"Uncovered: {gap}" if en else f"当番不在: {gap}")
    if gaps:
        fallback = schedule.fallback.name
        lines.append(
            f"Alerts in these hours go to the fallback: {fallback}."
            if en
            else f"不在時間帯の警報は代替連絡先（{fallback}）に送られます。"
        )
    return _item("duty", lang, not gaps, lines, roster=lines[: len(roster)], gaps=gaps)


def _monitoring(inputs: DailyCheckInputs, lang: Lang) -> CheckItem:
    en = lang == "en"
    seen = inputs.watchdog_last_seen
    limit = format_span(inputs.watchdog_max_age, lang)
    if seen is None:
        text = "No Watchdog heartbeat received." if en else "Watchdog の受信記録がありません。"
        return _item("monitoring", lang, False, [text], last_seen=None)
    ok = inputs.now - seen <= inputs.watchdog_max_age
    when = format_time(seen, lang)
    ago = _ago(inputs.now, seen, lang)
    if en:
        text = f"Watchdog last seen {when} ({ago}; expected within {limit})"
    else:
        text = f"Watchdog 最終受信: {when}（{ago}、許容 {limit}以内）"
    return _item("monitoring", lang, ok, [text], last_seen=seen.isoformat())


def _channels(inputs: DailyCheckInputs, lang: Lang) -> CheckItem:
    en = lang == "en"
    if not inputs.channels:
        text = "No channels are configured." if en else "通知チャンネルが設定されていません。"
        return _item("channels", lang, False, [text], channels=[])
    lines = []
    data = []
    all_ok = True
    for ch in inputs.channels:
        recent = (
            ch.last_success is not None and inputs.now - ch.last_success <= inputs.channel_max_age
        )
        ok = (recent or ch.test_ok is True) and ch.test_ok is not False
        all_ok = all_ok and ok
        mark = "OK" if ok else "NG"
        if ch.last_success is None:
            last = "never delivered" if en else "配信成功の記録なし"
        else:
            when = format_time(ch.last_success, lang)
            last = f"last success {when}" if en else f"最終配信成功 {when}"
        test = ""
        if ch.test_ok is not None:
            result = (
                ("ok" if ch.test_ok else "failed") if en else ("成功" if ch.test_ok else "失敗")
            )
            detail = f" {ch.test_detail}" if ch.test_detail else ""
            test = f"; test message {result}{detail}" if en else f"、テスト送信 {result}{detail}"
        lines.append(f"{mark} {ch.name} ({ch.kind}): {last}{test}")
        data.append(
            {
                "name": ch.name,
                "kind": ch.kind,
                "ok": ok,
                "last_success": ch.last_success.isoformat() if ch.last_success else None,
                "test_ok": ch.test_ok,
            }
        )
    return _item("channels", lang, all_ok, lines, channels=data)


def _backup(inputs: DailyCheckInputs, lang: Lang) -> CheckItem:
    en = lang == "en"
    age = inputs.backup_age_seconds
    limit = _hours(inputs.backup_max_age.total_seconds(), lang)
    if age is None:
        reason = inputs.backup_error or ("no data" if en else "データなし")
        text = f"Backup age unknown: {reason}" if en else f"バックアップの経過時間が不明: {reason}"
        return _item("backup", lang, False, [text], age_seconds=None)
    ok = age <= inputs.backup_max_age.total_seconds()
    shown = _hours(age, lang)
    text = (
        f"Newest backup is {shown} old (limit {limit})"
        if en
        else f"最新バックアップ: {shown}前（許容 {limit}以内）"
    )
    return _item("backup", lang, ok, [text], age_seconds=age)


def _hours(seconds: float, lang: Lang) -> str:
    hours = seconds / 3600
    return f"{hours:.1f} h" if lang == "en" else f"{hours:.1f}時間"


def _review(inputs: DailyCheckInputs, today: date, lang: Lang) -> CheckItem:
    en = lang == "en"
    yesterday = day_interval(today - timedelta(days=1))
    found = sorted(
        (i for i in inputs.incidents if yesterday.contains(i.opened_at)),
        key=lambda i: (i.opened_at, i.incident_id),
    )
    label = f"{yesterday.start:%Y-%m-%d} ({weekday_name(yesterday.start.date(), lang)})"
    if not found:
        text = f"No incidents on {label}." if en else f"{label} のインシデントはありません。"
        return _item("review", lang, True, [text], incidents=[])
    lines = []
    data = []
    ok = True
    for inc in found:
        opened = f"{to_tokyo(inc.opened_at):%H:%M}"
        if inc.resolved_at is None:
            span = f"{opened}- (unresolved)" if en else f"{opened}-（未解決）"
            ok = False
        else:
            minutes = math.ceil((inc.resolved_at - inc.opened_at).total_seconds() / 60)
            unit = "min" if en else "分"
            span = f"{opened}-{to_tokyo(inc.resolved_at):%H:%M} ({minutes} {unit})"
            if not en:
                span = f"{opened}-{to_tokyo(inc.resolved_at):%H:%M}（{minutes}分）"
        sla_text = ""
        if inc.sla is not None:
            ok = ok and not inc.sla.breaches
            words = {
                "met": ("met", "達成"),
                "breached": ("breached", "超過"),
                "pending": ("pending", "未確定"),
            }
            first = words[inc.sla.first_response][0 if en else 1]
            resp = words[inc.sla.response][0 if en else 1]
            sla_text = (
                f"; first response {first}, response {resp}"
                if en
                else f"、初動 {first}・対応 {resp}"
            )
        lines.append(f"{inc.incident_id} Level {inc.level} {span} {inc.summary}{sla_text}")
        data.append(
            {
                "id": inc.incident_id,
                "level": inc.level,
                "opened_at": inc.opened_at.isoformat(),
                "resolved_at": inc.resolved_at.isoformat() if inc.resolved_at else None,
                "state": inc.state,
                "breaches": list(inc.sla.breaches) if inc.sla else [],
            }
        )
    return _item("review", lang, ok, lines, incidents=data)


def backup_age_from_query(body: object) -> float | None:
    """The newest backup's age from a Prometheus ``/api/v1/query`` answer (None: no series).

    The query is expected to return one sample, e.g. ``max(voicedrive_backup_age_seconds)``.
    Raises ValueError naming what is wrong with a malformed answer.
    """
    if not isinstance(body, Mapping) or body.get("status") != "success":
        raise ValueError("Prometheus query did not succeed")
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") not in ("vector", "scalar"):
        raise ValueError("data.resultType: expected vector or scalar")
    result = data.get("result")
    if data["resultType"] == "scalar":
        sample = result
    else:
        if not isinstance(result, list):
            raise ValueError("data.result: expected a list")
        if not result:
            return None
        first = result[0]
        sample = first.get("value") if isinstance(first, Mapping) else None
    if not isinstance(sample, list) or len(sample) != 2:
        raise ValueError("data.result: expected [timestamp, value] samples")
    try:
        value = float(sample[1])
    except (TypeError, ValueError):
        raise ValueError(f"data.result: sample value {sample[1]!r} is not a number") from None
    if math.isnan(value):
        return None
    return value


def render_daily_check(report: DailyReport) -> str:
    """The report as a Markdown checklist in the report's language."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(BUILTIN_DIR)),
        autoescape=False,  # noqa: S701 - Markdown, not HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # An incident summary is alert text: its lines stay inside their item, behind a marker.
    env.filters["continued"] = partial(
        continued, marker=f"    {CONTINUATION.strip()} ", first=False
    )
    template = env.get_template(f"{report.lang}/daily_check.md.j2")
    return template.render(
        day=f"{report.day:%Y-%m-%d} ({weekday_name(report.day, report.lang)})",
        generated_at=format_time(report.generated_at, report.lang),
        ok=report.ok,
        items=report.items,
    )
