"""``POST /webhook``: Alertmanager's webhook v4, answered 2xx only once stored.

400 for any malformed input (Alertmanager would retry a 5xx forever), 413 above the size
limit, 503 while the store is unavailable (Alertmanager retries), never 429 (Alertmanager
drops those).
"""

import logging
from datetime import datetime

from aiohttp import web

from voicedrive_common.jsonbody import JsonBodyError, parse_json_bytes
from voicedrive_receiver.app import services
from voicedrive_receiver.auth import authorized, challenge
from voicedrive_receiver.errors import PayloadError, StoreUnavailable
from voicedrive_receiver.models import Notification, parse_notification
from voicedrive_receiver.planning import build_batch, make_planner
from voicedrive_receiver.store.base import incident_id_for

log = logging.getLogger(__name__)
# Groups whose last incident the webhook remembers (a few bytes each).
MAX_HINTS = 10_000


def _json(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes, *, now: datetime | None = None) -> Notification:
    """Decode and validate a webhook body; PayloadError says what is wrong and where."""
    try:
        data = parse_json_bytes(body)
    except JsonBodyError as exc:
        raise PayloadError("", exc.reason) from None
    return parse_notification(data, now=now)


async def handle(request: web.Request) -> web.Response:
    """Authenticate, parse, store durably, answer."""
    svc = services(request)
    server = svc.config.server
    if not authorized(request, server.auth, svc.secrets.auth):
        svc.metrics.webhooks.labels(outcome="unauthorized").inc()
        return _json(401, {"error": "unauthorized"}, headers=challenge(server.auth))
    body = await _read_body(request, server.max_body_bytes)
    if body is None:
        svc.metrics.webhooks.labels(outcome="too_large").inc()
        return _json(413, {"error": f"body larger than {server.max_body_bytes} bytes"})
    try:
        notification = parse_body(body, now=svc.clock.now())
        plan = build_batch(
            notification,
            body.decode("utf-8"),
            svc.config,
            received_at=svc.clock.now().timestamp(),
        )
        planner = make_planner(notification, plan, svc.config, svc.render)
        batch = plan.batch
        hint = svc.incident_hints.get(batch.group_key)
        if hint is None:
            # Most likely a new incident, whose id is derived from this very notification.
            hint = (
                incident_id_for(batch.group_key, batch.identity, batch.received_at),
                batch.level,
            )
        planner.prerender(*hint)
    except PayloadError as exc:
        svc.metrics.webhooks.labels(outcome="invalid").inc()
        log.warning("invalid webhook payload", extra={"field": exc.field, "err": exc.reason})
        return _json(400, {"error": str(exc), "field": exc.field})
    except Exception as exc:
        # Input validation missed something: a 500 would make Alertmanager retry the same body
        # forever, so it is a 400 and a loud log line with the traceback for the fix.
        svc.metrics.webhooks.labels(outcome="invalid").inc()
        log.exception("webhook payload could not be processed", extra={"err": type(exc).__name__})
        return _json(400, {"error": f"payload could not be processed ({type(exc).__name__})"})
    try:
        result = await svc.store.ingest(batch, planner)
    except StoreUnavailable as exc:
        svc.metrics.webhooks.labels(outcome="unavailable").inc()
        log.error("store unavailable, answering 503", extra={"err": str(exc)})
        return _json(503, {"error": "store unavailable, retry later"})

    if result.duplicate:
        svc.metrics.webhooks.labels(outcome="duplicate").inc()
        svc.metrics.duplicates.inc()
        log.info(
            "duplicate notification suppressed",
            extra={"group_key": notification.group_key, "incident": result.incident_id},
        )
        return _json(200, {"status": "duplicate", "incident_id": result.incident_id})

    if result.incident_id is not None and result.level is not None:
        if len(svc.incident_hints) >= MAX_HINTS:
            svc.incident_hints.clear()  # a guess cache: losing it only costs renderings
        svc.incident_hints[batch.group_key] = (result.incident_id, result.level)
    svc.metrics.webhooks.labels(outcome="accepted").inc()
    for alert, decision in zip(notification.alerts, plan.decisions, strict=True):
        svc.metrics.alerts.labels(level=str(decision.level), status=alert.status).inc()
        if decision.source == "default":
            svc.metrics.level_defaulted.inc()
            log.warning(
                "alert without a valid level and no matching rule: default level used",
                extra={
                    "alertname": alert.labels.get("alertname", ""),
                    "fingerprint": alert.fingerprint,
                    "alert_level": decision.level,
                },
            )
    for channel in result.channels:
        svc.worker.wake(channel)
    log.info(
        "notification stored",
        extra={
            "group_key": notification.group_key,
            "status": notification.status,
            "alert_level": plan.batch.level,
            "incident": result.incident_id,
            "enqueued": result.enqueued,
        },
    )
    return _json(
        200,
        {"status": "accepted", "incident_id": result.incident_id, "enqueued": result.enqueued},
    )
