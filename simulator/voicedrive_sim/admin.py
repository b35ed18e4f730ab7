"""The admin API and the application that owns every simulator listener.

``create_app`` builds the admin application; its ``cleanup_ctx`` starts and stops the API
listener, the database proxy and the notification writer, so one runner owns the whole
simulator and a clean stop of that runner stops everything.
"""

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from voicedrive_common.jsonbody import JsonBodyError, parse_json_bytes
from voicedrive_sim.api import ApiListener, create_api_app
from voicedrive_sim.dbproxy import DbProxy
from voicedrive_sim.faults import (
    FaultBoard,
    FaultError,
    parse_api_fault,
    parse_db_fault,
    parse_notification_fault,
)
from voicedrive_sim.settings import SimSettings
from voicedrive_sim.state import API_LISTENER, DB_PROXY, FAULTS, SETTINGS, WRITER
from voicedrive_sim.writer import NotificationWriter

log = logging.getLogger("voicedrive_sim.admin")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_BODY = 64 * 1024


def create_app(settings: SimSettings) -> web.Application:
    """The admin application, owning the API listener, the database proxy and the writer."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=_MAX_BODY
    )
    app[SETTINGS] = settings
    app[FAULTS] = FaultBoard(
        failure_ratio=settings.failure_ratio, rows_per_second=settings.rows_per_second
    )
    app.cleanup_ctx.append(_api_listener)
    app.cleanup_ctx.append(_db_proxy)
    app.cleanup_ctx.append(_writer)
    add_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    """Every admin route, in one place."""
    app.router.add_get("/admin/faults", get_faults)
    app.router.add_delete("/admin/faults", clear_faults)
    app.router.add_put("/admin/faults/api", put_api_fault)
    app.router.add_put("/admin/faults/db", put_db_fault)
    app.router.add_put("/admin/faults/notifications", put_notification_fault)


@web.middleware
async def auth_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """401 unless ``Authorization: Bearer <token>`` matches, compared in constant time."""
    expected = request.app[SETTINGS].admin_token.reveal().encode()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    ok = hmac.compare_digest(given.strip().encode(), expected) and scheme.lower() == "bearer"
    if not ok:
        return web.json_response(
            {"error": "unauthorized: send Authorization: Bearer <admin token>"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="voicedrive-sim"'},
        )
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Malformed fault requests become 400 with the field named; the simulator keeps running."""
    try:
        return await handler(request)
    except FaultError as exc:
        return web.json_response({"error": str(exc)}, status=400)


async def get_faults(request: web.Request) -> web.Response:
    """The current faults."""
    return _state(request)


async def clear_faults(request: web.Request) -> web.Response:
    """Lift every fault."""
    board = request.app[FAULTS]
    board.clear()
    await _apply(request.app)
    log.info("all faults cleared")
    return _state(request)


async def put_api_fault(request: web.Request) -> web.Response:
    """Set the fault of one endpoint or of ``*``."""
    endpoint, fault = parse_api_fault(await _json(request))
    request.app[FAULTS].set_api(endpoint, fault)
    await _apply(request.app)
    log.info("API fault set", extra={"endpoint": endpoint, "fault": fault})
    return _state(request)


async def put_db_fault(request: web.Request) -> web.Response:
    """Take the database proxy down or bring it back."""
    down = parse_db_fault(await _json(request))
    if request.app[DB_PROXY] is None:
        raise FaultError("down: the database proxy is not running (--db.proxy-listen-address)")
    request.app[FAULTS].set_db_down(down)
    await _apply(request.app)
    log.info("database fault set", extra={"down": down})
    return _state(request)


async def put_notification_fault(request: web.Request) -> web.Response:
    """Change the failure ratio and/or the rate of written delivery rows."""
    ratio, rate = parse_notification_fault(await _json(request))
    request.app[FAULTS].set_notifications(failure_ratio=ratio, rows_per_second=rate)
    log.info("notification fault set", extra={"failure_ratio": ratio, "rows_per_second": rate})
    return _state(request)


async def _json(request: web.Request) -> object:
    try:
        return parse_json_bytes(await request.read())
    except JsonBodyError as exc:
        raise FaultError(f"body: expected a JSON object ({exc.reason})") from None


async def _apply(app: web.Application) -> None:
    board = app[FAULTS]
    await app[API_LISTENER].sync(board.api_down)
    proxy = app[DB_PROXY]
    if proxy is not None:
        await proxy.set_down(board.db_down)


def _state(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].snapshot())


async def _api_listener(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    listener = ApiListener(create_api_app(app[FAULTS]), settings.api_host, settings.api_port)
    await listener.start()
    app[API_LISTENER] = listener
    yield
    await listener.cleanup()


async def _db_proxy(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.proxy_host is None:
        app[DB_PROXY] = None
        yield
        return
    proxy = DbProxy(
        host=settings.proxy_host,
        port=settings.proxy_port,
        target_host=settings.proxy_target_host,
        target_port=settings.proxy_target_port,
    )
    await proxy.open()
    app[DB_PROXY] = proxy
    yield
    await proxy.close()


async def _writer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.db_dsn is None:
        app[WRITER] = None
        yield
        return
    writer = NotificationWriter(
        dsn=settings.db_dsn, board=app[FAULTS], interval=settings.write_interval
    )
    app[WRITER] = writer
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop), name="notification-writer")
    yield
    stop.set()
    try:
        await asyncio.wait_for(task, 5.0)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
