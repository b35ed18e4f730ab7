"""From a parsed notification to what the store keeps and what the outbox sends (pure)."""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.config import ReceiverConfig
from voicedrive_receiver.identity import delivery_id, notification_identity, pair_key
from voicedrive_receiver.levels import LevelDecision, alert_level
from voicedrive_receiver.lifecycle.hold import hold_row, release_time
from voicedrive_receiver.models import Alert, Notification
from voicedrive_receiver.rendering import build_context
from voicedrive_receiver.routing import (
    Ownership,
    Route,
    duty_notes,
    ownership,
    resolved_routes,
    routes_for_level,
)
from voicedrive_receiver.store.base import AlertRecord, GroupState, IngestBatch, NewOutboxRow

# render(channel_kind, status, language, context) -> RenderedMessage; never raises.
Render = Callable[[str, str, str, Mapping[str, Any]], RenderedMessage]


@dataclass(frozen=True)
class Plan:
    """The batch to store, the per-alert level decisions, and the planner for the outbox."""

    batch: IngestBatch
    decisions: tuple[LevelDecision, ...]
    # The owning teams and roles, as build_batch found them (None: the planner works them out).
    owner: Ownership | None = None

    def alerts(self) -> tuple[AlertRecord, ...]:
        """The alerts of the batch."""
        return self.batch.alerts


def _ts(alert: Alert) -> float:
    return alert.starts_at.timestamp()


def _alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": alert.starts_at.isoformat(),
        # Not ended stays empty; the zero time is never turned into a date.
        "endsAt": alert.ends_at.isoformat() if alert.ends_at else "",
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }


def build_batch(
    notification: Notification, raw: str, config: ReceiverConfig, *, received_at: float
) -> Plan:
    """Decide levels and ownership for one notification."""
    decisions = tuple(alert_level(a.labels, config.levels) for a in notification.alerts)
    # levels.group_level, from the decisions just made instead of deciding every alert again.
    pairs = tuple(zip(notification.alerts, decisions, strict=True))
    levels = [d.level for a, d in pairs if a.status == "firing"] or [d.level for d in decisions]
    level = max(levels, default=config.levels.default)
    chosen = notification.firing() or notification.alerts
    owner = ownership(chosen, config)
    first = chosen[0]
    summary = (
        notification.common_annotations.get("summary")
        or first.annotations.get("summary")
        or notification.common_labels.get("alertname")
        or first.labels.get("alertname", "")
    )
    records = tuple(
        AlertRecord(
            fingerprint=a.fingerprint,
            status=a.status,
            starts_at=_ts(a),
            ends_at=a.ends_at.timestamp() if a.ends_at else None,
            level=d.level,
            level_source=d.source,
            labels=a.labels,
            annotations=a.annotations,
        )
        for a, d in pairs
    )
    batch = IngestBatch(
        identity=notification_identity(notification),
        group_key=notification.group_key,
        status=notification.status,
        level=level,
        system=",".join(owner.systems),
        component=",".join(owner.components),
        summary=summary[:500],
        received_at=received_at,
        external_url=notification.external_url,
        receiver=notification.receiver,
        payload=raw,
        alerts=records,
        reopen_within=config.incidents.reopen_within,
    )
    return Plan(batch=batch, decisions=decisions, owner=owner)


class OutboxPlanner:
    """Decides a notification's outbox rows inside the ingest transaction.

    Rendering is the costly part and depends on the group's state only through the incident
    id and level. ``prerender`` renders for a predicted (incident, level) before the
    transaction, on the event loop; the transaction uses those texts only when the state it
    reads has exactly that incident and level (then they are the same texts), and renders
    itself otherwise. A wrong prediction costs one more rendering, never a wrong message.
    """

    def __init__(
        self, notification: Notification, plan: Plan, config: ReceiverConfig, render: Render
    ) -> None:
        self.notification = notification
        self.batch = plan.batch
        self.config = config
        self.render = render
        self.owner = plan.owner or ownership(notification.firing() or notification.alerts, config)
        self.at = datetime.fromtimestamp(plan.batch.received_at, UTC)
        self._alerts = [_alert_json(a) for a in notification.alerts]
        self._prepared: dict[tuple[str, int, str], dict[str, Any]] = {}
        # routes_for_level per level: a pure function of the level, the owner, the (frozen)
        # config and the arrival time, asked by prerender and again by the transaction.
        self._routes: dict[int, tuple[Route, ...]] = {}

    def _routes_for(self, level: int) -> tuple[Route, ...]:
        routes = self._routes.get(level)
        if routes is None:
            routes = routes_for_level(level, self.owner, self.config, at=self.at)
            self._routes[level] = routes
        return routes

    def _context(self, incident_id: str, level: int) -> dict[str, Any]:
        batch, notification, config = self.batch, self.notification, self.config
        incident_url = (
            f"{config.server.external_url}/api/incidents/{incident_id}"
            if config.server.external_url
            else ""
        )
        # The level's configured P2 deadline, the one the SLA measures the incident against.
        deadline = config.lifecycle.escalation.level(level).response_deadline
        context = build_context(
            status=batch.status,
            level=level,
            alerts=self._alerts,
            group_labels=notification.group_labels,
            common_labels=notification.common_labels,
            common_annotations=notification.common_annotations,
            incident_id=incident_id,
            incident_url=incident_url,
            external_url=notification.external_url,
            group_key=notification.group_key,
            receiver=notification.receiver,
            watch_seconds=config.incidents.reopen_within,
            respond_seconds=deadline.total_seconds(),
        )
        if batch.status == "firing":
            # Nobody on duty: the fallback was paged, and the message says so (issue 5).
            short, full = duty_notes(level, self.owner, config, self.at)
            if short:
                context["summary"] = f"{short} {context['summary']}"
                context["description"] = f"{full} {context['description']}".strip()
        return context

    def prerender(self, incident_id: str, level: int) -> None:
        """Render, ahead of the transaction, what (incident_id, level) would send."""
        level = max(self.batch.level, level)
        kinds = {self.config.channels[r.channel].kind for r in self._routes_for(level)}
        if not kinds:
            return
        context = self._context(incident_id, level)
        for kind in sorted(kinds):
            message = self.render(kind, self.batch.status, self.config.language, context)
            self._prepared[(incident_id, level, kind)] = rendered_to_json(message)

    def __call__(self, state: GroupState) -> list[NewOutboxRow]:
        """The rows for ``state`` (the group as the transaction reads it)."""
        batch, config = self.batch, self.config
        if state.incident_id is None:
            # A resolved group we never saw firing: nobody was paged, nobody hears of it.
            return []
        if batch.status == "firing" and not state.new_firing:
            # Alertmanager resends a group when part of it resolves; with nothing newly firing
            # that is an update of the incident, not a reason to page anyone again.
            return []
        level = max(batch.level, state.incident_level)
        routes: tuple[Route, ...]
        if batch.status == "firing":
            routes = self._routes_for(level)
        else:
            routes = resolved_routes(state.firing_routes, config)
        # Outside business hours, low levels wait for the hold team (issue 5): parked rows.
        hold = config.lifecycle.hold
        release = release_time(hold, level=level, at=self.at) if batch.status == "firing" else None
        held = set(config.teams[hold.team].members) if hold.team in config.teams else set()
        rendered: dict[str, dict[str, Any]] = {}
        context: dict[str, Any] | None = None
        rows = []
        for route in routes:
            kind = config.channels[route.channel].kind
            if kind not in rendered:
                prepared = self._prepared.get((state.incident_id, level, kind))
                if prepared is None:
                    if context is None:
                        context = self._context(state.incident_id, level)
                    prepared = rendered_to_json(
                        self.render(kind, batch.status, config.language, context)
                    )
                rendered[kind] = prepared
            row = NewOutboxRow(
                delivery_id=delivery_id(batch.identity, route.channel, route.contact),
                pair_key=pair_key(batch.group_key, route.channel, route.contact),
                purpose="notification",
                incident_id=state.incident_id,
                group_key=batch.group_key,
                channel=route.channel,
                contact=route.contact,
                status=batch.status,
                level=level,
                rendered=rendered[kind],
                not_before=batch.received_at,
            )
            if release is not None and route.contact in held:
                row = hold_row(row, release)
            rows.append(row)
        return rows


def make_planner(
    notification: Notification, plan: Plan, config: ReceiverConfig, render: Render
) -> OutboxPlanner:
    """The function the store calls inside its transaction to decide the outbox rows."""
    return OutboxPlanner(notification, plan, config, render)


def rendered_to_json(message: RenderedMessage) -> dict[str, Any]:
    """A RenderedMessage as stored in the outbox."""
    extra = _plain_copy(message.extra, 0)
    if extra is _NOT_PLAIN:
        extra = json.loads(json.dumps(message.extra, ensure_ascii=False, default=str))
    return {
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "extra": extra,
    }


# _plain_copy's answer for data a JSON round trip would change (or refuse).
_NOT_PLAIN: Any = object()
# Deeper than this goes the round trip, which also reports a reference cycle as it always did.
_MAX_PLAIN_DEPTH = 32
# Beyond Python's default int/str conversion limit (4300 digits) the round trip raises.
_MAX_PLAIN_INT = 10**4000


def _plain_copy(value: Any, depth: int) -> Any:
    # A JSON round trip of data that is JSON already is a deep copy (a Slack message's blocks):
    # copied directly, without serialising and parsing it again. Anything else (tuples, str
    # subclasses, non-text keys, objects needing default=str) takes the round trip.
    kind = type(value)
    if kind is str or kind is bool or kind is float or value is None:
        return value
    if kind is int:
        return value if -_MAX_PLAIN_INT < value < _MAX_PLAIN_INT else _NOT_PLAIN
    if depth >= _MAX_PLAIN_DEPTH:
        return _NOT_PLAIN
    if kind is dict:
        out: dict[str, Any] = {}
        for key, item in value.items():
            copied = _plain_copy(item, depth + 1)
            if type(key) is not str or copied is _NOT_PLAIN:
                return _NOT_PLAIN
            out[key] = copied
        return out
    if kind is list:
        items = []
        for item in value:
            copied = _plain_copy(item, depth + 1)
            if copied is _NOT_PLAIN:
                return _NOT_PLAIN
            items.append(copied)
        return items
    return _NOT_PLAIN


def rendered_from_json(data: Mapping[str, Any]) -> RenderedMessage:
    """The RenderedMessage of an outbox row."""
    return RenderedMessage(
        subject=str(data.get("subject", "")),
        text=str(data.get("text", "")),
        html=str(data.get("html", "")),
        extra=dict(data.get("extra") or {}),
    )
