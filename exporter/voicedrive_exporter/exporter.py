"""The running exporter: config, probes, snapshot store and the HTTP endpoints around them."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from html import escape
from pathlib import Path

import aiohttp
import psutil
from aiohttp import web

from voicedrive_common.clock import Clock, SystemClock
from voicedrive_common.errors import ConfigError
from voicedrive_common.webconfig import WebConfig
from voicedrive_exporter import __version__
from voicedrive_exporter.collector import Exposition
from voicedrive_exporter.config import Config, load_config
from voicedrive_exporter.probes import configured
from voicedrive_exporter.probes.base import ProbeDeps, SystemStats
from voicedrive_exporter.probes.http import new_session
from voicedrive_exporter.scheduler import Job, Scheduler
from voicedrive_exporter.snapshot import SnapshotStore

log = logging.getLogger("voicedrive_exporter")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exporter:
    """Probes in the background and renders their latest results; reloadable."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        clock: Clock | None = None,
        system: SystemStats | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
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

    async def reload(self) -> bool:
        """Re-read the config file; on any error keep running the old config."""
        if self.config_path is None:
            return False
        async with self._reload_lock:  # two quick SIGHUPs must not interleave stop and start
            return await self._reload(self.config_path)

    async def _reload(self, path: str | Path) -> bool:
        try:
            config = load_config(path)
        except Exception as exc:  # a bad reload must never stop the exporter
            # A ConfigError already names file and key; anything else is a loader bug and
            # gets its type so it can be told apart.
            reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            log.error("config reload failed, keeping the previous config", extra={"err": reason})
            self.store.reloaded(False)
            return False
        if self._scheduler is not None:
            await self._scheduler.stop()
        self.config = config
        self._start_scheduler()
        self.store.reloaded(True)
        log.info("config reloaded", extra={"file": str(path)})
        return True

    async def stop(self) -> None:
        """Stop probing and close the HTTP client."""
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._session is not None:
            await self._session.close()


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
    """The aiohttp app serving /metrics, /, /-/healthy and /-/ready; owns the probe loops."""
    middlewares = [web_config.middleware()] if web_config is not None else []
    app = web.Application(middlewares=middlewares)
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
