"""HTTP API of the lifecycle (authenticated like the webhook) and the scheduler's task.

``POST /api/incidents/{id}/ack`` ``{"by": NAME}``, ``POST /api/incidents/{id}/resolve``
``{"by": NAME}``, ``PATCH /api/incidents/{id}/record`` ``{field: text, ...}``,
``GET /api/incidents/{id}/record.md[?lang=en]``, ``GET /api/daily-check[?format=markdown]
[&lang=en]``, ``POST /api/daily-check/test-messages`` (one test message per channel), and
``POST /webhook/watchdog`` (Alertmanager's Watchdog heartbeat).
Domain errors map to HTTP in one place (``_errors``): unknown incident 404, a transition that
does not fit 409, a bad field 400, store trouble 503.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from voicedrive_common.jsonbody import JsonBodyError, parse_json_bytes
from voicedrive_receiver.app import Services, require_auth, services
from voicedrive_receiver.auth import authorized, challenge
from voicedrive_receiver.errors import StoreRejected, StoreUnavailable
from voicedrive_receiver.lifecycle.daily_check import build_daily_check, render_daily_check
from voicedrive_receiver.lifecycle.escalation import TransitionError
from voicedrive_receiver.lifecycle.metrics import LifecycleMetrics
from voicedrive_receiver.lifecycle.persistence import LifecycleStore, UnknownIncident
from voicedrive_receiver.lifecycle.records import RecordFieldError, render_record, validate_fields
from voicedrive_receiver.lifecycle.scheduler import WATCHDOG, LifecycleScheduler
from voicedrive_receiver.lifecycle.service import (
    gather_daily_check,
    record_of,
    records_override,
    test_message_rows,
)
from voicedrive_receiver.lifecycle.settings import LifecycleConfig
from voicedrive_receiver.lifecycle.tokyo import LANGS, Lang
from voicedrive_receiver.store.base import SqlStore

MAX_NAME = 200


@dataclass
class LifecycleServices:
    """The lifecycle's parts inside one receiver app."""

    settings: LifecycleConfig
    store: LifecycleStore
    metrics: LifecycleMetrics
    scheduler: LifecycleScheduler


LIFECYCLE = web.AppKey("lifecycle", LifecycleServices)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def _errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        require_auth(request)
        try:
            return await handler(request)
        except UnknownIncident as exc:
            return _error(404, str(exc))
        except TransitionError as exc:
            return _error(409, str(exc))
        except RecordFieldError as exc:
            return _error(400, str(exc), exc.field)
        except StoreRejected:
            # The same request would be refused again: a retry after a 503 cannot help.
            return _error(400, "the store refused a value of this request (NUL character?)")
        except StoreUnavailable:
            return _error(503, "store unavailable")

    return wrapped


async def _json_body(request: web.Request, *, required: bool) -> dict[str, Any]:
    body = await request.read()
    if not body.strip():
        if required:
            raise RecordFieldError("", "expected a JSON object body")
        return {}
    try:
        data = parse_json_bytes(body)
    except JsonBodyError as exc:
        raise RecordFieldError("", exc.reason) from None
    if not isinstance(data, dict):
        raise RecordFieldError("", "expected a JSON object body")
    return data


def _name(data: dict[str, Any], *, default: str | None) -> str:
    value = data.get("by", default)
    if not isinstance(value, str) or not value.strip():
        raise RecordFieldError("by", 'needs the name of who does it, e.g. {"by": "yamada"}')
    if len(value) > MAX_NAME:
        raise RecordFieldError("by", f"longer than {MAX_NAME} characters")
    return value.strip()


def _lang(request: web.Request, svc: Services) -> Lang:
    value = request.query.get("lang", svc.config.language)
    if value not in LANGS:
        raise RecordFieldError("lang", f"must be one of {', '.join(LANGS)}")
    return value


async def _incident_json(svc: Services, incident_id: str) -> web.Response:
    found = await svc.store.get_incident(incident_id)
    if found is None:
        raise UnknownIncident(f"no incident {incident_id!r}")
    return web.json_response(found.to_json())


@_errors
async def acknowledge(request: web.Request) -> web.StreamResponse:
    """Acknowledge an incident: escalation stops, ``by`` is the responder of record."""
    svc = services(request)
    life = request.app[LIFECYCLE]
    by = _name(await _json_body(request, required=True), default=None)
    incident_id = request.match_info["id"]
    await life.store.acknowledge(incident_id, by=by, now=svc.clock.now())
    return await _incident_json(svc, incident_id)


@_errors
async def resolve(request: web.Request) -> web.StreamResponse:
    """Resolve an incident by hand (the 30-minute watch starts)."""
    svc = services(request)
    life = request.app[LIFECYCLE]
    by = _name(await _json_body(request, required=False), default="api")
    incident_id = request.match_info["id"]
    await life.store.resolve(incident_id, by=by, now=svc.clock.now())
    return await _incident_json(svc, incident_id)


@_errors
async def update_record(request: web.Request) -> web.StreamResponse:
    """Fill the record's free-text fields."""
    svc = services(request)
    life = request.app[LIFECYCLE]
    data = await _json_body(request, required=True)
    by = _name(data, default="api")
    data.pop("by", None)
    fields = validate_fields(data)
    incident_id = request.match_info["id"]
    found = await life.store.update_record(incident_id, fields, by=by, now=svc.clock.now())
    return web.json_response({"id": found.id, "record": dict(found.record)})


@_errors
async def record_markdown(request: web.Request) -> web.StreamResponse:
    """The P9 record as Markdown."""
    svc = services(request)
    life = request.app[LIFECYCLE]
    lang = _lang(request, svc)
    found = await life.store.get(request.match_info["id"])
    record = record_of(found, life.settings.escalation, svc.clock.now())
    text = render_record(record, lang=lang, override_dir=records_override(svc.config))
    return web.Response(text=text, content_type="text/markdown", charset="utf-8")


@_errors
async def daily_check(request: web.Request) -> web.StreamResponse:
    """Today's P9 checklist from live data (JSON, or Markdown with ``?format=markdown``)."""
    svc = services(request)
    life = request.app[LIFECYCLE]
    lang = _lang(request, svc)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "markdown"):
        raise RecordFieldError("format", "must be json or markdown")
    inputs = await gather_daily_check(
        config=svc.config, settings=life.settings, store=life.store, now=svc.clock.now()
    )
    report = build_daily_check(inputs, lang=lang)
    if fmt == "markdown":
        return web.Response(
            text=render_daily_check(report), content_type="text/markdown", charset="utf-8"
        )
    return web.json_response(report.to_dict())


@_errors
async def send_test_messages(request: web.Request) -> web.StreamResponse:
    """Enqueue one test message per channel; the next daily check shows whether they arrived."""
    svc = services(request)
    life = request.app[LIFECYCLE]
    rows = test_message_rows(svc.config, now=svc.clock.now())
    enqueued = await life.store.enqueue(rows, now=svc.clock.now())
    channels = sorted({r.channel for r in rows})
    for channel in channels:
        svc.worker.wake(channel)
    return web.json_response({"enqueued": enqueued, "channels": channels})


async def watchdog(request: web.Request) -> web.StreamResponse:
    """Alertmanager's Watchdog: any authenticated POST counts as a heartbeat."""
    svc = services(request)
    server = svc.config.server
    if not authorized(request, server.auth, svc.secrets.auth):
        return web.json_response(
            {"error": "unauthorized"}, status=401, headers=challenge(server.auth)
        )
    # The body is not needed; reading it (bounded) keeps the connection reusable.
    await request.content.read(server.max_body_bytes)
    life = request.app[LIFECYCLE]
    now = svc.clock.now()
    try:
        await life.store.heartbeat(WATCHDOG, now=now)
    except StoreUnavailable:
        return _error(503, "store unavailable")
    life.metrics.watchdog_last_seen.set(now.timestamp())
    return web.json_response({"status": "ok"})


def install(app: web.Application, svc: Services, *, run_scheduler: bool = True) -> None:
    """Add the lifecycle's routes to the receiver app; run its scheduler beside the worker."""
    store = svc.store
    if not isinstance(store, SqlStore):
        raise TypeError("the lifecycle needs the SQL store")
    settings: LifecycleConfig = svc.config.lifecycle
    life_store = LifecycleStore(store)
    metrics = LifecycleMetrics(svc.metrics.registry)
    scheduler = LifecycleScheduler(
        config=svc.config,
        settings=settings,
        store=life_store,
        render=svc.render,
        clock=svc.clock,
        metrics=metrics,
        wake=svc.worker.wake,
    )
    app[LIFECYCLE] = LifecycleServices(
        settings=settings, store=life_store, metrics=metrics, scheduler=scheduler
    )
    app.router.add_post("/api/incidents/{id}/ack", acknowledge)
    app.router.add_post("/api/incidents/{id}/resolve", resolve)
    app.router.add_patch("/api/incidents/{id}/record", update_record)
    app.router.add_get("/api/incidents/{id}/record.md", record_markdown)
    app.router.add_get("/api/daily-check", daily_check)
    app.router.add_post("/api/daily-check/test-messages", send_test_messages)
    app.router.add_post("/webhook/watchdog", watchdog)

    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop), name="lifecycle") if run_scheduler else None
        yield
        stop.set()
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=10)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.cleanup_ctx.append(scheduler_ctx)
