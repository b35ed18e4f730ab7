"""Glue between the store and the pure modules: records and the daily check from live data.

Shared by the HTTP API and the CLI, so both say exactly the same.
"""

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.config import ADDRESSLESS_KINDS, ReceiverConfig
from voicedrive_receiver.identity import delivery_id, pair_key
from voicedrive_receiver.lifecycle.daily_check import (
    ChannelStatus,
    DailyCheckInputs,
    IncidentSummary,
    backup_age_from_query,
)
from voicedrive_receiver.lifecycle.escalation import EscalationPolicy, evaluate_sla
from voicedrive_receiver.lifecycle.persistence import LifecycleStore, StoredIncident, when
from voicedrive_receiver.lifecycle.records import IncidentRecord, TimelineEvent, build_record
from voicedrive_receiver.lifecycle.schedule import day_interval
from voicedrive_receiver.lifecycle.scheduler import WATCHDOG
from voicedrive_receiver.lifecycle.settings import LifecycleConfig
from voicedrive_receiver.lifecycle.tokyo import format_time, to_tokyo
from voicedrive_receiver.planning import rendered_to_json
from voicedrive_receiver.routing import audience_contacts, ownership
from voicedrive_receiver.store.base import NewOutboxRow

log = logging.getLogger(__name__)


def _level(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def timeline_of(events: Sequence[Mapping[str, Any]]) -> tuple[TimelineEvent, ...]:
    """The record's steps from the stored incident events (record edits are not steps)."""
    out = []
    for event in events:
        at = when(event["at"])
        if at is None:
            continue
        kind = str(event["kind"])
        d: Mapping[str, Any] = event.get("detail") or {}
        if kind == "opened":
            out.append(TimelineEvent(at, "opened", to_level=_level(d.get("level"))))
        elif kind == "delivered":
            status = "notified_resolved" if d.get("status") == "resolved" else "notified"
            out.append(
                TimelineEvent(
                    at,
                    status,
                    channel=str(d.get("channel", "")),
                    recipient=str(d.get("contact", "")),
                )
            )
        elif kind == "dead_letter":
            out.append(
                TimelineEvent(
                    at,
                    "delivery_failed",
                    channel=str(d.get("channel", "")),
                    recipient=str(d.get("contact", "")),
                )
            )
        elif kind in ("held", "digested"):
            out.append(
                TimelineEvent(
                    at,
                    kind,
                    channel=str(d.get("channel", "")),
                    recipient=str(d.get("contact", "")),
                    until=_instant(d.get("release_at")),
                )
            )
        elif kind in ("acknowledged", "resolved"):
            out.append(TimelineEvent(at, kind, actor=str(d.get("by", ""))))
        elif kind in ("level_raised", "escalated"):
            out.append(
                TimelineEvent(
                    at,
                    "raised" if kind == "level_raised" else "escalated",
                    from_level=_level(d.get("from")),
                    to_level=_level(d.get("to")),
                )
            )
        elif kind == "repaged":
            out.append(TimelineEvent(at, "repaged", to_level=_level(d.get("level"))))
        elif kind == "sla_breach":
            out.append(TimelineEvent(at, "sla_breach", note=str(d.get("kind", ""))))
        elif kind in ("reopened", "closed"):
            out.append(TimelineEvent(at, kind))
        elif kind == "note":
            out.append(
                TimelineEvent(at, "note", actor=str(d.get("by", "")), note=str(d.get("text", "")))
            )
    return tuple(out)


def records_override(config: ReceiverConfig) -> Path | None:
    """The operator's record templates: ``<templates.directory>/records`` (same layout)."""
    directory = config.templates.directory
    return None if directory is None else Path(directory) / "records"


def record_of(found: StoredIncident, policy: EscalationPolicy, now: datetime) -> IncidentRecord:
    """The P9 record of a stored incident."""
    fields = {k: str(v) for k, v in found.record.items() if isinstance(v, str)}
    return build_record(
        incident_id=found.id,
        summary=found.summary,
        system=found.system,
        component=found.component,
        lifecycle=found.lifecycle,
        policy=policy,
        now=now,
        timeline=timeline_of(found.events),
        fields=fields,
        started_at=found.first_started_at,
    )


async def backup_age(
    settings: LifecycleConfig, session: aiohttp.ClientSession | None = None
) -> tuple[float | None, str]:
    """The newest backup's age from Prometheus, or None with the reason."""
    daily = settings.daily_check
    if not daily.prometheus_url:
        return None, "daily_check.prometheus_url is not configured"
    own = session is None
    client = session or aiohttp.ClientSession()
    try:
        async with client.get(
            f"{daily.prometheus_url}/api/v1/query",
            params={"query": daily.backup_query},
            timeout=aiohttp.ClientTimeout(total=daily.timeout),
        ) as resp:
            body = await resp.json(content_type=None)
        return backup_age_from_query(body), ""
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, f"Prometheus query failed: {type(exc).__name__}"
    except ValueError as exc:
        return None, f"Prometheus answer: {exc}"
    finally:
        if own:
            await client.close()


async def gather_daily_check(
    *,
    config: ReceiverConfig,
    settings: LifecycleConfig,
    store: LifecycleStore,
    now: datetime,
    session: aiohttp.ClientSession | None = None,
    test_results: Mapping[str, tuple[bool, str]] | None = None,
) -> DailyCheckInputs:
    """Everything the daily check looks at, read from the store and Prometheus now."""
    successes = await store.channel_successes()
    results = test_results or {}
    channels = tuple(
        ChannelStatus(
            name=name,
            kind=spec.kind,
            last_success=when(successes.get(name)),
            test_ok=results[name][0] if name in results else None,
            test_detail=results[name][1] if name in results else "",
        )
        for name, spec in config.channels.items()
    )
    today = to_tokyo(now).date()
    yesterday = day_interval(today - timedelta(days=1))
    incidents = []
    for incident_id in await store.incidents_opened_between(yesterday.start, yesterday.end):
        found = await store.get(incident_id)
        lc = found.lifecycle
        incidents.append(
            IncidentSummary(
                incident_id=found.id,
                summary=found.summary,
                level=lc.level,
                opened_at=lc.opened_at,
                resolved_at=lc.resolved_at,
                state=lc.state.value,
                sla=evaluate_sla(lc, settings.escalation, now),
            )
        )
    age, error = await backup_age(settings, session)
    return DailyCheckInputs(
        now=now,
        schedule=settings.schedule,
        watchdog_last_seen=await store.last_heartbeat(WATCHDOG),
        watchdog_max_age=timedelta(seconds=settings.watchdog.max_age),
        channels=channels,
        channel_max_age=timedelta(seconds=settings.daily_check.channel_max_age),
        backup_age_seconds=age,
        backup_max_age=timedelta(seconds=settings.daily_check.backup_max_age),
        incidents=tuple(incidents),
        backup_error=error,
    )


_TEST_TEXT = {
    "ja": "【疎通確認】VoiceDrive 緊急連絡体制の日次チェックによるテスト送信です"
    "（{channel}、{when}）。",
    "en": "[connectivity check] VoiceDrive daily check test message ({channel}, {when}).",
}


def test_message_rows(config: ReceiverConfig, *, now: datetime) -> list[NewOutboxRow]:
    """One test message per channel, to the first recipient its fan-out (or report) targets name."""
    lang = config.language
    when_text = format_time(now, lang)
    owner = ownership((), config)
    key = f"daily-test:{now.timestamp():.3f}"
    targets = [(t.channel, t.to) for t in config.fanout.targets]
    targets += [(r.channel, r.to) for r in config.outbox.dead_letter_report]
    rows = []
    for name, spec in config.channels.items():
        contact = next(
            (
                c
                for channel, audience in targets
                if channel == name
                for token in audience
                for c in audience_contacts(token, owner, config, at=now)
                if c in config.contacts
                and (spec.kind in ADDRESSLESS_KINDS or spec.kind in config.contacts[c].addresses)
            ),
            None,
        )
        if contact is None:
            continue
        text = _TEST_TEXT[lang].format(channel=name, when=when_text)
        subject = "【疎通確認】" if lang == "ja" else "[connectivity check]"
        rows.append(
            NewOutboxRow(
                delivery_id=delivery_id(key, name, contact),
                pair_key=pair_key(key, name, contact),
                purpose="test",
                incident_id=None,
                group_key=key,
                channel=name,
                contact=contact,
                status="firing",
                level=1,
                rendered=rendered_to_json(RenderedMessage(subject=subject, text=text)),
                not_before=now.timestamp(),
            )
        )
    return rows
