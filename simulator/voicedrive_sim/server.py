"""Running the simulator: one runner for the admin app, which starts everything else."""

from dataclasses import dataclass

from aiohttp import web

from voicedrive_sim.admin import create_app
from voicedrive_sim.settings import SimSettings
from voicedrive_sim.state import API_LISTENER, DB_PROXY, FAULTS, WRITER


@dataclass
class RunningSimulator:
    """A started simulator and the addresses it actually bound (ports given as 0 resolved)."""

    runner: web.AppRunner
    app: web.Application

    @property
    def api_url(self) -> str:
        """Base URL of the VoiceDrive API stand-in."""
        listener = self.app[API_LISTENER]
        return f"http://{listener.host}:{listener.port}"

    @property
    def admin_url(self) -> str:
        """Base URL of the admin API."""
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    @property
    def proxy_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the database proxy, when it runs."""
        proxy = self.app[DB_PROXY]
        return None if proxy is None else (proxy.host, proxy.port)

    async def stop(self) -> None:
        """Stop every listener and the writer."""
        await self.runner.cleanup()


async def start_simulator(settings: SimSettings) -> RunningSimulator:
    """Start the admin listener (and through it the API, proxy and writer)."""
    app = create_app(settings)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.admin_host, settings.admin_port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return RunningSimulator(runner=runner, app=app)


__all__ = ["FAULTS", "WRITER", "RunningSimulator", "start_simulator"]
