"""The receiver's scheduler: escalations, re-pages, closing, and the dead man's switch.

Each pass reads every incident that is not closed, asks ``escalation.next_step`` what is due at
the clock's now, and applies it through ``LifecycleStore.run_due`` (once across replicas). The
clock is injected: tests call ``run_once`` after moving a FakeClock; production runs ``run``,
which repeats ``run_once`` every ``lifecycle.scheduler.interval``.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from voicedrive_common.clock import Clock, sleep_until_stopped
from voicedrive_receiver.config import ADDRESSLESS_KINDS, ReceiverConfig
from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.identity import delivery_id, pair_key
from voicedrive_receiver.lifecycle.escalation import Action, Close, Escalate, Repage
from voicedrive_receiver.lifecycle.hold import release_digests
from voicedrive_receiver.lifecycle.metrics import LifecycleMetrics
from voicedrive_receiver.lifecycle.persistence import Applied, LifecycleStore, StoredIncident
from voicedrive_receiver.lifecycle.settings import LifecycleConfig
from voicedrive_receiver.lifecycle.tokyo import format_span, format_time
from voicedrive_receiver.models import Alert
from voicedrive_receiver.planning import Render, rendered_to_json
from voicedrive_receiver.rendering import build_context
from voicedrive_receiver.routing import (
    Route,
    audience_contacts,
    duty_notes,
    ownership,
    routes_for_level,
)
from voicedrive_receiver.store.base import NewOutboxRow

log = logging.getLogger(__name__)

WATCHDOG = "watchdog"

_ESCALATED = {
    "ja": "【エスカレーション Level {from_level}→{to_level}】{summary}",
    "en": "[ESCALATED Level {from_level} -> {to_level}] {summary}",
}
_ESCALATED_WHY = {
    "ja": "{wait}以内に確認されなかったため Level {to_level} に引き上げました。",
    "en": "Not acknowledged within {wait}: raised to Level {to_level}.",
}
_REPAGED = {
    "ja": "【再呼び出し 第{round}回 Level 4】{summary}",
    "en": "[RE-PAGE #{round} Level 4] {summary}",
}
_DEADMAN = {
    "ja": "監視パイプライン停止の疑い: Watchdog が {wait}間届いていません（最終受信 {last}）",
    "en": "Monitoring pipeline may be down: no Watchdog for {wait} (last seen {last})",
}


def _alert_objects(alerts: Sequence[Mapping[str, Any]]) -> list[Alert]:
    # ownership() needs only the labels; the other fields are filled with what the store has.
    out = []
    for a in alerts:
        out.append(
            Alert(
                status="resolved" if a.get("status") == "resolved" else "firing",
                labels=dict(a.get("labels") or {}),
                annotations=dict(a.get("annotations") or {}),
                starts_at=datetime.fromisoformat(a["startsAt"]),
                ends_at=None,
                generator_url="",
                fingerprint=str(a.get("fingerprint", "")),
            )
        )
    return out


@dataclass(frozen=True)
class _Message:
    routes: tuple[Route, ...]
    context: dict[str, Any]
    purpose: str


class LifecycleScheduler:
    """Applies due lifecycle steps and watches the Watchdog heartbeat."""

    def __init__(
        self,
        *,
        config: ReceiverConfig,
        settings: LifecycleConfig,
        store: LifecycleStore,
        render: Render,
        clock: Clock,
        metrics: LifecycleMetrics,
        wake: Callable[[str], None] = lambda _channel: None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        self.render = render
        self.clock = clock
        self.metrics = metrics
        self.wake = wake

    async def run_once(self) -> list[Applied]:
        """One pass over every incident that is not closed, then the heartbeat check."""
        now = self.clock.now()
        done = []
        for incident_id, group_key in await self.store.active():
            applied = await self.store.run_due(
                incident_id,
                group_key,
                now=now,
                policy=self.settings.escalation,
                plan=self._plan,
            )
            self._account(applied)
            done.append(applied)
        released = await release_digests(
            self.store.store, policy=self.settings.hold, now=now, lang=self.config.language
        )
        for channel in released.channels:
            self.wake(channel)
        if released.digests:
            log.info(
                "held messages released as digests",
                extra={"digests": released.digests, "items": released.items},
            )
        await self.check_watchdog(now)
        return done

    def _account(self, applied: Applied) -> None:
        for action in applied.actions:
            if isinstance(action, Escalate):
                self.metrics.escalations.labels(
                    from_level=str(action.from_level), to_level=str(action.to_level)
                ).inc()
                log.warning(
                    "incident escalated",
                    extra={
                        "incident": applied.incident_id,
                        "from_level": action.from_level,
                        "to_level": action.to_level,
                    },
                )
            elif isinstance(action, Repage):
                log.warning(
                    "level 4 re-paged",
                    extra={"incident": applied.incident_id, "round": action.round},
                )
            else:
                log.info("incident closed after the watch", extra={"incident": applied.incident_id})
        for level, kind in applied.breaches:
            self.metrics.sla_breaches.labels(level=str(level), kind=kind).inc()
            log.warning(
                "SLA breached",
                extra={"incident": applied.incident_id, "kind": kind, "alert_level": level},
            )
        if applied.acknowledged_after is not None:
            level, seconds = applied.acknowledged_after
            self.metrics.time_to_acknowledge.labels(level=str(level)).observe(seconds)
        if applied.resolved_after is not None:
            level, seconds = applied.resolved_after
            self.metrics.time_to_resolve.labels(level=str(level)).observe(seconds)
        for channel in applied.channels:
            self.wake(channel)

    def _plan(
        self,
        incident: StoredIncident,
        action: Action,
        now: float,
        alerts: list[dict[str, Any]],
    ) -> list[NewOutboxRow]:
        message = self._message(incident, action, alerts, now)
        if message is None:
            return []
        rendered: dict[str, dict[str, Any]] = {}
        identity = f"{incident.id}:{action.key}"
        rows = []
        for route in message.routes:
            kind = self.config.channels[route.channel].kind
            if kind not in rendered:
                rendered[kind] = rendered_to_json(
                    self.render(kind, "firing", self.config.language, message.context)
                )
            rows.append(
                NewOutboxRow(
                    delivery_id=delivery_id(identity, route.channel, route.contact),
                    pair_key=pair_key(incident.group_key, route.channel, route.contact),
                    purpose=message.purpose,
                    incident_id=incident.id,
                    group_key=incident.group_key,
                    channel=route.channel,
                    contact=route.contact,
                    status="firing",
                    level=incident.lifecycle.level,
                    rendered=rendered[kind],
                    not_before=now,
                )
            )
        return rows

    def _message(
        self, incident: StoredIncident, action: Action, alerts: list[dict[str, Any]], now: float
    ) -> _Message | None:
        if isinstance(action, Close):
            return None
        lang = self.config.language
        at = datetime.fromtimestamp(now, UTC)
        owner = ownership(_alert_objects(alerts), self.config)
        level = incident.lifecycle.level
        routes = set(routes_for_level(level, owner, self.config, at=at))
        context = self._context(incident, alerts, level)
        short, full = duty_notes(level, owner, self.config, at)
        summary = f"{short} {incident.summary}" if short else incident.summary
        if full:
            context["description"] = f"{full} {context.get('description', '')}".strip()
        if isinstance(action, Escalate):
            after = self.settings.escalation.level(action.from_level).escalate_after
            wait = format_span(after or 0.0, lang)
            context["summary"] = _ESCALATED[lang].format(
                from_level=action.from_level, to_level=action.to_level, summary=summary
            )
            why = _ESCALATED_WHY[lang].format(wait=wait, to_level=action.to_level)
            context["description"] = f"{why} {context.get('description', '')}".strip()
            return _Message(tuple(sorted(routes)), context, "escalation")
        assert isinstance(action, Repage)
        top_channels = {t.channel for t in self.config.fanout.targets if t.level == level} or {
            t.channel for t in self.config.fanout.targets
        }
        for channel in top_channels:
            kind = self.config.channels[channel].kind
            for token in action.audience:
                for contact in audience_contacts(token, owner, self.config, at=at):
                    known = self.config.contacts.get(contact)
                    if known and (kind in ADDRESSLESS_KINDS or kind in known.addresses):
                        routes.add(Route(channel, contact))
        context["summary"] = _REPAGED[lang].format(round=action.round, summary=summary)
        return _Message(tuple(sorted(routes)), context, "repage")

    def _context(
        self, incident: StoredIncident, alerts: list[dict[str, Any]], level: int
    ) -> dict[str, Any]:
        firing = [a for a in alerts if a.get("status") == "firing"] or alerts
        first = firing[0] if firing else {}
        url = self.config.server.external_url
        return build_context(
            status="firing",
            level=level,
            alerts=firing,
            common_labels=first.get("labels", {}),
            common_annotations=first.get("annotations", {}),
            incident_id=incident.id,
            incident_url=f"{url}/api/incidents/{incident.id}" if url else "",
            group_key=incident.group_key,
            respond_seconds=self._respond_seconds(level),
        )

    def _respond_seconds(self, level: int) -> float:
        # The deadline the SLA counts for the level from when it was reached (configured).
        return self.settings.escalation.level(level).response_deadline.total_seconds()

    async def check_watchdog(self, now: datetime) -> bool:
        """Update the heartbeat gauge; page once per silence when it is too old. True if paged."""
        last = await self.store.last_heartbeat(WATCHDOG)
        self.metrics.watchdog_last_seen.set(last.timestamp() if last else 0.0)
        settings = self.settings.watchdog
        if last is None or not settings.page:
            return False
        age = (now - last).total_seconds()
        if age <= settings.max_age:
            return False
        key = f"deadman:{last.timestamp():.3f}"
        if not await self.store.claim_once(key, now=now):
            return False
        lang = self.config.language
        text = _DEADMAN[lang].format(wait=format_span(age, lang), last=format_time(last, lang))
        context = build_context(
            status="firing",
            level=3,
            alerts=[],
            common_labels={"alertname": "WatchdogMissing", "system": "voicedrive"},
            common_annotations={"summary": text, "description": text},
            respond_seconds=self._respond_seconds(3),
        )
        rows = []
        for page in settings.page:
            kind = self.config.channels[page.channel].kind
            rendered = rendered_to_json(self.render(kind, "firing", lang, context))
            for contact in page.to:
                rows.append(
                    NewOutboxRow(
                        delivery_id=delivery_id(key, page.channel, contact),
                        pair_key=pair_key(key, page.channel, contact),
                        purpose="deadman",
                        incident_id=None,
                        group_key=key,
                        channel=page.channel,
                        contact=contact,
                        status="firing",
                        level=3,
                        rendered=rendered,
                        not_before=now.timestamp(),
                    )
                )
        await self.store.enqueue(rows, now=now)
        for page in settings.page:
            self.wake(page.channel)
        log.error(
            "Watchdog heartbeat missing: dead man's switch paged",
            extra={"age_seconds": round(age), "pages": len(rows)},
        )
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Repeat ``run_once`` until ``stop`` is set; store trouble is logged and retried."""
        interval = self.settings.scheduler_interval
        while not stop.is_set():
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                log.warning("lifecycle scheduler: store unavailable", extra={"err": str(exc)})
            except Exception:  # one bad incident must not stop every timer
                log.exception("lifecycle scheduler pass failed")
            if await sleep_until_stopped(stop, interval):
                return
