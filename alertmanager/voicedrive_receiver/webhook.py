"""``POST /webhook``: Alertmanager's webhook v4, answered 2xx only once journaled on disk.

400 for any malformed input (Alertmanager would retry a 5xx forever), 413 above the size
limit, 503 while the store is unavailable (Alertmanager retries), never 429 (Alertmanager
drops those).
"""

import logging

from aiohttp import web

from voicedrive_receiver.app import Services, services
from voicedrive_receiver.auth import authorized, challenge
from voicedrive_receiver.errors import PayloadError, StoreUnavailable
from voicedrive_receiver.levels import group_level
from voicedrive_receiver.models import parse_body
from voicedrive_receiver.processing import PROCESSOR, Processor
from voicedrive_receiver.store.schema import is_urgent

log = logging.getLogger(__name__)


def _json(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes (the app's client_max_size)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


async def handle(request: web.Request) -> web.Response:
    """Authenticate, validate, journal durably, answer; processing follows (processing.py)."""
    svc = services(request)
    processor = request.app[PROCESSOR]
    server = svc.config.server
    if not authorized(request, server.auth, svc.secrets.auth):
        svc.metrics.webhook("unauthorized")
        return _json(401, {"error": "unauthorized"}, headers=challenge(server.auth))
    processor.ack_started()
    try:
        return await _accept(request, svc, processor)
    finally:
        processor.ack_finished()


async def _accept(request: web.Request, svc: Services, processor: Processor) -> web.Response:
    server = svc.config.server
    body = await _read_body(request, server.max_body_bytes)
    if body is None:
        svc.metrics.webhook("too_large")
        return _json(413, {"error": f"body larger than {server.max_body_bytes} bytes"})
    received = svc.clock.now()
    try:
        notification = parse_body(body, now=received)
        text = body.decode("utf-8")
        # Judged again when processed; here it only says whether the row is urgent.
        firing = notification.firing()
        level = group_level(firing, svc.config.levels) if firing else None
    except PayloadError as exc:
        svc.metrics.webhook("invalid")
        log.warning("invalid webhook payload", extra={"field": exc.field, "err": exc.reason})
        return _json(400, {"error": str(exc), "field": exc.field})
    except Exception as exc:
        # Input validation missed something: a 500 would make Alertmanager retry the same body
        # forever, so it is a 400 and a loud log line with the traceback for the fix.
        svc.metrics.webhook("invalid")
        log.exception("webhook payload could not be processed", extra={"err": type(exc).__name__})
        return _json(400, {"error": f"payload could not be processed ({type(exc).__name__})"})
    if processor.backlog >= server.max_backlog * (2 if is_urgent(level) else 1):
        # Alertmanager keeps the notification and retries; a 2xx would only grow a queue
        # whose pages are already late. An urgent one is processed ahead of that queue, so it
        # is taken up to twice the limit: a bound still, should urgent ones be the flood.
        svc.metrics.webhook("backlogged")
        log.error(
            "processing backlog full, answering 503",
            extra={"backlog": processor.backlog, "max_backlog": server.max_backlog},
        )
        return _json(503, {"error": "receiver backlogged, retry later"})
    try:
        receipt = await svc.store.journal.append(
            group_key=notification.group_key,
            received_at=received.timestamp(),
            owner=svc.instance,
            payload=text,
            level=level,
        )
    except StoreUnavailable as exc:
        svc.metrics.webhook("unavailable")
        log.error("store unavailable, answering 503", extra={"err": str(exc)})
        return _json(503, {"error": "store unavailable, retry later"})
    processor.accepted(level)
    svc.metrics.webhook("accepted")
    # Written out: the answer to every webhook, and json.dumps costs twice as much.
    return web.Response(
        text=f'{{"status": "accepted", "receipt": {receipt:d}}}', content_type="application/json"
    )
