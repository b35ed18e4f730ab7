"""The P9 incident record and its Markdown rendering.

The record follows the protocol document's template (``# Phase 2緊急事態対応記録`` with its
four sections and their items) and adds what the receiver knows exactly: the level history, the
timeline of notifications, acknowledgements and escalations, and the SLA verdicts. The
document's shell snippet would have written ``$(date)`` literally; every time here is a real
instant, shown in Asia/Tokyo.

Templates: ``templates/records/{ja,en}/record.md.j2``; an operator directory given as
``override_dir`` is searched first. A broken override falls back to the built-in template (the
record must always render) and the error is logged.
"""

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from voicedrive_receiver.lifecycle.errors import LifecycleError
from voicedrive_receiver.lifecycle.escalation import (
    EscalationPolicy,
    LevelChange,
    Lifecycle,
    SlaResult,
    State,
    evaluate_sla,
    level_names,
)
from voicedrive_receiver.lifecycle.tokyo import LANGS, Lang, format_span, format_time

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "templates" / "records"

# Free-text fields responders fill in through the API and CLI.
RECORD_FIELDS = ("symptoms", "impact", "suspected_cause", "root_cause", "prevention")
MAX_FIELD_CHARS = 10_000

SYSTEM_NAMES: dict[Lang, dict[str, str]] = {
    "ja": {"voicedrive": "VoiceDrive", "medical": "医療システム", "both": "両方"},
    "en": {"voicedrive": "VoiceDrive", "medical": "medical system", "both": "both"},
}


class RecordFieldError(LifecycleError):
    """A record update names an unknown field or carries a bad value; ``field`` says which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class TimelineEvent:
    """One step taken: language-neutral facts, worded at render time.

    ``kind``: opened, notified, notified_resolved, delivery_failed, held (``until`` = its
    release), digested (a held page went out in the business-hours digest), acknowledged,
    raised, escalated, repaged, resolved, reopened, closed, sla_breach (``note`` = the breached
    kind), note.
    """

    at: datetime
    kind: str
    actor: str = ""
    channel: str = ""
    recipient: str = ""
    from_level: int | None = None
    to_level: int | None = None
    note: str = ""
    until: datetime | None = None


@dataclass(frozen=True)
class IncidentRecord:
    """Everything the P9 record shows for one incident."""

    incident_id: str
    summary: str
    # The earliest alert's startsAt when known, else the receipt; received_at is the receipt.
    occurred_at: datetime
    level: int
    level_history: tuple[LevelChange, ...]
    system: str
    component: str
    state: State
    response_started_at: datetime | None = None
    responder: str | None = None
    resolved_at: datetime | None = None
    timeline: tuple[TimelineEvent, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)
    sla: SlaResult | None = None
    received_at: datetime | None = None
    # The configured timers (incidents.reopen_within, the first-response target) the texts name.
    monitoring: timedelta = timedelta(minutes=30)
    first_response_target: timedelta = timedelta(minutes=15)

    @property
    def duration(self) -> timedelta | None:
        """From occurrence to resolution (None while unresolved)."""
        if self.resolved_at is None:
            return None
        return self.resolved_at - self.occurred_at

    @property
    def duration_minutes(self) -> int | None:
        """The duration in whole minutes, a started minute counting as one."""
        if self.duration is None:
            return None
        return math.ceil(self.duration.total_seconds() / 60)


def validate_fields(data: object) -> dict[str, str]:
    """The record fields of an update body; unknown fields and non-strings are errors."""
    if not isinstance(data, Mapping):
        raise RecordFieldError("", "expected a JSON object of record fields")
    out = {}
    for key, value in data.items():
        if key not in RECORD_FIELDS:
            raise RecordFieldError(
                str(key), f"unknown record field (use {', '.join(RECORD_FIELDS)})"
            )
        if not isinstance(value, str):
            raise RecordFieldError(key, "expected a string")
        if len(value) > MAX_FIELD_CHARS:
            raise RecordFieldError(key, f"longer than {MAX_FIELD_CHARS} characters")
        out[key] = value.strip()
    return out


# --- wording --------------------------------------------------------------------------------

_CHANGE_REASON: dict[Lang, dict[str, str]] = {
    "ja": {
        "escalated": "未応答のためエスカレーション",
        "raised": "上位の警報で引き上げ",
    },
    "en": {
        "escalated": "escalated: not acknowledged",
        "raised": "raised by a higher alert",
    },
}

_EVENT_TEXT: dict[Lang, dict[str, str]] = {
    "ja": {
        "opened": "インシデント発生（Level {to_level}）",
        "notified": "{target} に通知",
        "notified_resolved": "{target} に解決を通知",
        "raised": "Level {from_level} → Level {to_level} に引き上げ（上位の警報）",
        "delivery_failed": "{target} への通知に失敗",
        "held": "営業時間外のため保留: {target}（{until} の営業開始時にまとめて送信）",
        "digested": "保留した通知を営業開始のまとめ通知で送信: {target}",
        "acknowledged": "{actor} が確認（対応開始）",
        "escalated": "Level {from_level} → Level {to_level} にエスカレーション",
        "repaged": "Level {to_level} 再呼び出し（{target}）",
        "resolved": "解決（{watch}間の監視開始）",
        "reopened": "監視中に再発: 再オープン",
        "closed": "{watch}間の監視終了・再発なし: クローズ",
        "sla_breach": "SLA超過: {breach}",
        "note": "メモ: {note}",
    },
    "en": {
        "opened": "Incident opened at Level {to_level}",
        "notified": "Notified via {target}",
        "notified_resolved": "Resolution sent via {target}",
        "raised": "Raised Level {from_level} → Level {to_level} by a higher alert",
        "delivery_failed": "Delivery failed via {target}",
        "held": "Held for business hours: {target} (to go out in the digest at {until})",
        "digested": "Held message sent in the business-hours digest via {target}",
        "acknowledged": "Acknowledged by {actor} (response started)",
        "escalated": "Escalated Level {from_level} → Level {to_level}",
        "repaged": "Level {to_level} re-paged ({target})",
        "resolved": "Resolved (watch of {watch} started)",
        "reopened": "Fired again during the watch: reopened",
        "closed": "Watch of {watch} over without recurrence: closed",
        "sla_breach": "SLA breached: {breach}",
        "note": "Note: {note}",
    },
}
_BREACH_NAMES: dict[Lang, dict[str, str]] = {
    "ja": {"first_response": "初動{first_response}以内", "response": "対応期限"},
    "en": {
        "first_response": "first response within {first_response}",
        "response": "response deadline",
    },
}
# Events whose wording already names the actor.
_NAMES_ACTOR = frozenset({"acknowledged"})


def describe_change(change: LevelChange, lang: Lang = "ja") -> str:
    """One line of the level history."""
    when = format_time(change.at, lang)
    if change.from_level is None:
        if lang == "en":
            return f"{when} opened at Level {change.to_level}"
        return f"{when} Level {change.to_level} で発生"
    reason = _CHANGE_REASON[lang][change.reason]
    if lang == "en":
        return f"{when} Level {change.from_level} → Level {change.to_level} ({reason})"
    return f"{when} Level {change.from_level} → Level {change.to_level}（{reason}）"


def describe_event(
    event: TimelineEvent,
    lang: Lang = "ja",
    *,
    watch: timedelta = timedelta(minutes=30),
    first_response: timedelta = timedelta(minutes=15),
) -> str:
    """One line of the steps taken, without the time; ``watch`` and ``first_response`` as set."""
    breach = _BREACH_NAMES[lang].get(event.note, event.note)
    if event.kind == "sla_breach":
        breach = breach.format(first_response=format_span(first_response, lang))
    target = event.channel + (f" → {event.recipient}" if event.recipient else "")
    pattern = _EVENT_TEXT[lang].get(event.kind, "{kind}: {note}")
    text = pattern.format(
        target=target,
        actor=event.actor,
        from_level=event.from_level,
        to_level=event.to_level,
        note=event.note,
        kind=event.kind,
        breach=breach,
        watch=format_span(watch, lang),
        until=format_time(event.until, lang, empty="?"),
    )
    if event.actor and event.kind not in _NAMES_ACTOR:
        text += f" [{event.actor}]"
    if event.note and "{note}" not in pattern and "{breach}" not in pattern:
        text += f": {event.note}"
    return text


_STATE_NAMES: dict[Lang, dict[State, str]] = {
    "ja": {
        State.OPEN: "対応待ち",
        State.ACKNOWLEDGED: "対応中",
        State.MONITORING: "復旧後監視中",
        State.CLOSED: "完了",
    },
    "en": {
        State.OPEN: "open",
        State.ACKNOWLEDGED: "acknowledged",
        State.MONITORING: "monitoring after recovery",
        State.CLOSED: "closed",
    },
}


def _verdict(verdict: str, lang: Lang) -> str:
    words = {
        "ja": {"met": "達成", "breached": "超過", "pending": "未確定"},
        "en": {"met": "met", "breached": "breached", "pending": "pending"},
    }
    return words[lang][verdict]


# --- rendering ------------------------------------------------------------------------------


def _environment(directories: list[Path]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in directories]),
        # Markdown, not HTML: escaping would put entities into the record.
        autoescape=False,  # noqa: S701
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def _md_text(value: str | None, empty: str, indent: int = 2) -> str:
    """Free text on one list item: continuation lines indented so the list stays intact."""
    if value is None or not value.strip():
        return empty
    lines = [line.rstrip() for line in value.strip().splitlines()]
    return ("\n" + " " * indent).join(lines)


def render_record(
    record: IncidentRecord, *, lang: Lang = "ja", override_dir: Path | None = None
) -> str:
    """The record as Markdown in ``lang`` (Japanese by default)."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}")
    context = _context(record, lang)
    name = f"{lang}/record.md.j2"
    if override_dir is not None:
        try:
            return _environment([override_dir, BUILTIN_DIR]).get_template(name).render(context)
        except jinja2.TemplateError as exc:
            log.error(
                "record template failed, using the built-in one",
                extra={"template": name, "dir": str(override_dir), "error": str(exc)},
            )
    return _environment([BUILTIN_DIR]).get_template(name).render(context)


def _context(record: IncidentRecord, lang: Lang) -> dict[str, Any]:
    empty = "(not recorded)" if lang == "en" else "未記入"
    names = level_names(lang)

    def text(name: str) -> str:
        return _md_text(record.fields.get(name), empty)

    timers = {"watch": record.monitoring, "first_response": record.first_response_target}
    sla: dict[str, str] | None = None
    if record.sla is not None:
        s = record.sla
        sla = {
            # The SLA clock starts at the receipt, not at the alert's own start.
            "first_response_target": format_span(
                s.first_response_due - (record.received_at or record.occurred_at), lang
            ),
            "first_response": _verdict(s.first_response, lang),
            "time_to_acknowledge": format_span(s.time_to_acknowledge, lang),
            "response_due": format_time(s.response_due, lang),
            # Which configured deadline that instant is: the texts state it, not P2's table.
            "response_level": str(s.response_level),
            "response_deadline": format_span(s.response_deadline, lang, hours=True),
            "response": _verdict(s.response, lang),
        }
    return {
        "id": record.incident_id,
        "summary": _md_text(record.summary, empty),
        "occurred_at": format_time(record.occurred_at, lang),
        "received_at": format_time(record.received_at or record.occurred_at, lang),
        "level": record.level,
        "level_name": names[record.level],
        "level_history": [describe_change(c, lang) for c in record.level_history],
        "system": SYSTEM_NAMES[lang].get(record.system, record.system),
        "component": record.component,
        "state": _STATE_NAMES[lang][record.state],
        "symptoms": text("symptoms"),
        "impact": text("impact"),
        "suspected_cause": text("suspected_cause"),
        "root_cause": text("root_cause"),
        "prevention": text("prevention"),
        "response_started_at": format_time(record.response_started_at, lang, empty=empty),
        "responder": record.responder or empty,
        "steps": [
            f"{format_time(e.at, lang)} {_md_text(describe_event(e, lang, **timers), empty, 4)}"
            for e in sorted(record.timeline, key=lambda e: e.at)
        ],
        "resolved_at": format_time(record.resolved_at, lang, empty=empty),
        "duration_minutes": record.duration_minutes,
        "empty": empty,
        "sla": sla,
        "watch": format_span(record.monitoring, lang),
        "first_response_target": format_span(record.first_response_target, lang),
    }


def build_record(
    *,
    incident_id: str,
    summary: str,
    system: str,
    component: str,
    lifecycle: Lifecycle,
    policy: EscalationPolicy,
    now: datetime,
    timeline: tuple[TimelineEvent, ...] = (),
    fields: Mapping[str, str] | None = None,
    started_at: datetime | None = None,
) -> IncidentRecord:
    """The record of an incident from its lifecycle; the acknowledger is the responder.

    ``started_at`` (the earliest alert's startsAt) is when it occurred: the receipt comes a
    ``for`` window and a group_wait later, and durations measured from it would be too short.
    """
    occurred = lifecycle.opened_at if started_at is None else min(started_at, lifecycle.opened_at)
    return IncidentRecord(
        incident_id=incident_id,
        summary=summary,
        occurred_at=occurred,
        received_at=lifecycle.opened_at,
        level=lifecycle.level,
        level_history=lifecycle.history,
        system=system,
        component=component,
        state=lifecycle.state,
        response_started_at=lifecycle.acknowledged_at,
        responder=lifecycle.acknowledged_by,
        resolved_at=lifecycle.resolved_at,
        timeline=timeline,
        fields=dict(fields or {}),
        sla=evaluate_sla(lifecycle, policy, now),
        monitoring=policy.monitoring,
        first_response_target=policy.first_response,
    )
