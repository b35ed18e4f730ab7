"""The running exporter: config, probes, snapshot store and the HTTP endpoints around them."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from html import escape
from pathlib import Path

import aiohttp
import psutil
from aiohttp import web
from aiohttp.typedefs import Handler

from voicedrive_common.clock import Clock, SystemClock
from voicedrive_common.errors import ConfigError
from voicedrive_common.webconfig import WebConfig, load_web_config
from voicedrive_exporter import __version__
from voicedrive_exporter.collector import Exposition
from voicedrive_exporter.config import Config, load_config
from voicedrive_exporter.listener import Listener
from voicedrive_exporter.probes import configured
from voicedrive_exporter.probes.base import ProbeDeps, SystemStats
from voicedrive_exporter.probes.http import new_session
from voicedrive_exporter.scheduler import Job, Scheduler
from voicedrive_exporter.snapshot import SnapshotStore

log = logging.getLogger("voicedrive_exporter")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exporter:
    """Probes in the background and renders their latest results; reloadable.

    A reload re-reads the config file and, when ``web_config_path`` is set, the web config
    (TLS, basic auth, headers): each file that fails keeps its previous version, and the
    reload gauge says 1 only when every file was read.
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        clock: Clock | None = None,
        system: SystemStats | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        web_config: WebConfig | None = None,
        web_config_path: str | Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.web_config_path = web_config_path
        self.use_web_config(web_config or WebConfig())
        # Set by whoever opens the socket (main.serve); a reload re-opens it for new TLS.
        self.listener: Listener | None = None
        self.clock = clock or SystemClock()
        self.store = SnapshotStore()
        self.exposition = Exposition(lambda: self.store.snapshot, version=__version__)
        self._system: SystemStats = system or psutil
        self._session_factory = session_factory or _default_session
        self._session: aiohttp.ClientSession | None = None
        self._scheduler: Scheduler | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        """Open the HTTP client and start probing."""
        self._session = self._session_factory()
        self._start_scheduler()

    def _start_scheduler(self) -> None:
        assert self._session is not None
        jobs = [Job(kind, settings) for kind, settings in configured(self.config)]
        self.store.configure(job.name for job in jobs)
        endpoints = self.config.api.endpoints if self.config.api else ()
        self.store.retain_histograms(e.name for e in endpoints)
        deps = ProbeDeps(session=self._session, clock=self.clock, system=self._system)
        self._scheduler = Scheduler(jobs, store=self.store, deps=deps, clock=self.clock)
        self._scheduler.start()

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler of the current config."""
        assert self._scheduler is not None
        return self._scheduler

    def use_web_config(self, web_config: WebConfig) -> None:
        """Serve every following request with ``web_config``'s basic auth and headers."""
        self._web_middleware = web_config.middleware()
        self.web_config = web_config

    async def web_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The current web config's middleware (read per request, so a reload applies)."""
        return await self._web_middleware(request, handler)

    async def reload(self) -> bool:
        """Re-read the config and web config files; a file with any error keeps its old one."""
        if self.config_path is None and self.web_config_path is None:
            return False
        async with self._reload_lock:  # two quick SIGHUPs must not interleave stop and start
            ok = True
            if self.config_path is not None:
                ok = await self._reload(self.config_path)
            if self.web_config_path is not None:
                ok = await self._reload_web(self.web_config_path) and ok
            self.store.reloaded(ok)
            return ok

    async def _reload(self, path: str | Path) -> bool:
        try:
            config = load_config(path)
        except Exception as exc:  # a bad reload must never stop the exporter
            log.error(
                "config reload failed, keeping the previous config", extra={"err": _reason(exc)}
            )
            return False
        if self._scheduler is not None:
            await self._scheduler.stop()
        self.config = config
        self._start_scheduler()
        log.info("config reloaded", extra={"file": str(path)})
        return True

    async def _reload_web(self, path: str | Path) -> bool:
        try:
            web_config = load_web_config(path)
            # Certificates are read now: a missing or broken file keeps the old listener.
            ssl_context = web_config.ssl_context()
        except Exception as exc:  # a bad reload must never stop the exporter
            log.error(
                "web config reload failed, keeping the previous web config",
                extra={"file": str(path), "err": _reason(exc)},
            )
            return False
        listener = self.listener
        if listener is not None and (listener.tls or ssl_context is not None):
            try:
                await listener.restart(ssl_context)
            except OSError as exc:
                log.error(
                    "web config reload failed, keeping the previous web config",
                    extra={"file": str(path), "err": f"cannot listen: {exc.strerror}"},
                )
                return False
        self.use_web_config(web_config)
        log.info("web config reloaded", extra={"file": str(path)})
        return True

    async def stop(self) -> None:
        """Stop probing and close the HTTP client."""
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._session is not None:
            await self._session.close()


def _reason(exc: Exception) -> str:
    # A ConfigError already names file and key; anything else is a loader bug and gets its
    # type so it can be told apart.
    return str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"


def _default_session() -> aiohttp.ClientSession:
    return new_session(user_agent=f"voicedrive-exporter/{__version__}")


EXPORTER_KEY = web.AppKey("exporter", Exporter)

_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>VoiceDrive exporter</title></head>
<body><h1>VoiceDrive exporter</h1><p>version {version}</p>
<ul><li><a href="metrics">metrics</a></li><li><a href="-/healthy">healthy</a></li>
<li><a href="-/ready">ready</a></li></ul><p>Probes: {probes}</p></body></html>
"""


async def _metrics(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    return web.Response(body=exporter.exposition.render(), headers={"Content-Type": CONTENT_TYPE})


async def _landing(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    probes = ", ".join(exporter.store.snapshot.probes) or "none"
    return web.Response(
        text=_LANDING.format(version=escape(__version__), probes=escape(probes)),
        content_type="text/html",
    )


async def _healthy(request: web.Request) -> web.Response:
    del request
    return web.Response(text="OK\n")


async def _ready(request: web.Request) -> web.Response:
    if request.app[EXPORTER_KEY].store.snapshot.ready:
        return web.Response(text="Ready\n")
    return web.Response(status=503, text="Not ready: first probe round still running\n")


def create_app(exporter: Exporter, web_config: WebConfig | None = None) -> web.Application:
    """The aiohttp app serving /metrics, /, /-/healthy and /-/ready; owns the probe loops.

    ``web_config`` replaces the exporter's; either way a reload of it applies to the app.
    """
    if web_config is not None:
        exporter.use_web_config(web_config)

    @web.middleware
    async def current_web_config(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await exporter.web_middleware(request, handler)

    app = web.Application(middlewares=[current_web_config])
    app[EXPORTER_KEY] = exporter
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _landing)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await app[EXPORTER_KEY].start()
        yield
        await app[EXPORTER_KEY].stop()

    app.cleanup_ctx.append(lifecycle)
    return app
