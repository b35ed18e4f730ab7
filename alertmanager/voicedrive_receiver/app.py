"""The aiohttp application: routes, shared state and background tasks."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voicedrive_common.clock import Clock
from voicedrive_receiver.auth import authorized, challenge
from voicedrive_receiver.channels.base import Channel
from voicedrive_receiver.config import Auth, ReceiverConfig, ResolvedSecrets
from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.metrics import ReceiverMetrics
from voicedrive_receiver.outbox import OutboxWorker
from voicedrive_receiver.planning import Render
from voicedrive_receiver.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request handler or the worker needs."""

    config: ReceiverConfig
    secrets: ResolvedSecrets
    store: Store
    channels: Mapping[str, Channel]
    metrics: ReceiverMetrics
    render: Render
    clock: Clock
    worker: OutboxWorker
    # Owner of the journal rows this process accepts: stable across restarts of the same
    # instance (host and port), so a restarted receiver resumes its rows at once.
    instance: str = "local"


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    """The Services of the app handling ``request``."""
    return request.app[SERVICES]


def require_auth(request: web.Request) -> None:
    """Raise 401 unless the request carries the webhook credentials."""
    svc = services(request)
    if not authorized(request, svc.config.server.auth, svc.secrets.auth):
        raise web.HTTPUnauthorized(
            text='{"error": "unauthorized"}',
            content_type="application/json",
            headers=challenge(svc.config.server.auth),
        )


def _metrics_auth(svc: Services) -> tuple[Auth | None, object]:
    mode = svc.config.server.metrics_auth
    if mode == "open":
        return None, None
    if mode == "same":
        return svc.config.server.auth, svc.secrets.auth
    return mode, svc.secrets.metrics_auth


def _require_metrics_auth(request: web.Request) -> None:
    svc = services(request)
    auth, secret = _metrics_auth(svc)
    if auth is not None and not authorized(request, auth, secret):  # type: ignore[arg-type]
        raise web.HTTPUnauthorized(text="unauthorized\n", headers=challenge(auth))


async def healthy(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    _require_metrics_auth(request)
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    """Readiness: the store answers."""
    _require_metrics_auth(request)
    try:
        await services(request).store.ping()
    except StoreUnavailable:
        return web.Response(status=503, text="store unavailable\n")
    return web.Response(text="OK\n")


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    _require_metrics_auth(request)
    body = generate_latest(services(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(svc: Services, *, run_worker: bool = True) -> web.Application:
    """The receiver app; with ``run_worker`` the outbox worker runs beside it."""
    from voicedrive_receiver import incidents, webhook
    from voicedrive_receiver.processing import PROCESSOR, Processor

    app = web.Application(client_max_size=svc.config.server.max_body_bytes + 1)
    app[SERVICES] = svc
    processor = app[PROCESSOR] = Processor(svc)
    app.router.add_post("/webhook", webhook.handle)
    app.router.add_post("/api/v1/webhook", webhook.handle)
    incidents.add_routes(app)
    from voicedrive_receiver.lifecycle import api as lifecycle_api

    lifecycle_api.install(app, svc, run_scheduler=run_worker)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/metrics", metrics)

    async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = (
            [
                asyncio.create_task(processor.run(stop), name="journal"),
                asyncio.create_task(svc.worker.run(stop), name="outbox"),
            ]
            if run_worker
            else []
        )
        yield
        stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.cleanup_ctx.append(worker_ctx)
    return app
