"""The stand-in VoiceDrive API (``/health``, ``/api/status``) and the fault middleware."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from voicedrive_sim.faults import FaultBoard, without_hang
from voicedrive_sim.state import FAULTS, VERSION

log = logging.getLogger("voicedrive_sim.api")

# A hung request is released when its fault is lifted; this bounds the wait all the same.
MAX_HANG_SECONDS = 3600.0
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_api_app(board: FaultBoard) -> web.Application:
    """The API application; every request passes through the fault middleware."""
    app = web.Application(middlewares=[fault_middleware])
    app[FAULTS] = board
    app.router.add_get("/health", health)
    app.router.add_get("/api/status", status)
    return app


async def health(request: web.Request) -> web.Response:
    """Liveness, as the real service answers it."""
    return web.json_response({"status": "ok", "service": "voicedrive"})


async def status(request: web.Request) -> web.Response:
    """Status with components; the database entry follows the database fault."""
    board = request.app[FAULTS]
    return web.json_response(
        {
            "status": "ok",
            "version": VERSION,
            "components": {
                "api": "ok",
                "database": "unreachable" if board.db_down else "ok",
                "notifications": "ok",
            },
        }
    )


@web.middleware
async def fault_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Hang, delay, fail or corrupt the answer as the board says for this path."""
    board = request.app[FAULTS]
    fault = board.api_fault_for(request.path)
    if fault.hang:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_HANG_SECONDS
        while fault.hang:
            remaining = deadline - loop.time()
            if remaining <= 0:
                # Never answering is the point, but every wait here is bounded.
                fault = without_hang(fault)
                break
            await board.wait_changed(within=remaining)
            fault = board.api_fault_for(request.path)
    if fault.latency_seconds > 0:
        await asyncio.sleep(fault.latency_seconds)
    if fault.status is not None:
        response: web.StreamResponse = web.json_response(
            {"status": "error", "error": "injected fault"}, status=fault.status
        )
    else:
        response = await handler(request)
    if fault.corrupt and isinstance(response, web.Response) and response.body is not None:
        response = web.Response(
            body=corrupt(bytes(response.body)),  # type: ignore[arg-type]
            status=response.status,
            content_type="application/json",
        )
    return response


def corrupt(body: bytes) -> bytes:
    """``body`` cut short and followed by bytes that are neither UTF-8 nor JSON."""
    return body[: max(1, len(body) // 2)] + b"\x00\xff\xfe garbled"


class ApiListener:
    """The API's TCP listener, which the ``down`` fault closes and its clearing re-opens."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        self.host = host
        self.port = port
        self._site: web.TCPSite | None = None

    @property
    def is_open(self) -> bool:
        """Whether connections are being accepted."""
        return self._site is not None

    async def start(self) -> None:
        """Set up the runner and open the listener."""
        await self._runner.setup()
        await self.open()

    async def open(self) -> None:
        """Accept connections again, on the port first bound (so clients find it)."""
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site
        if self.port == 0:
            self.port = int(self._runner.addresses[-1][1])
        log.info("API listener open", extra={"address": f"{self.host}:{self.port}"})

    async def close(self) -> None:
        """Close the listener and drop live connections: clients see connection refused."""
        site, self._site = self._site, None
        if site is None:
            return
        await site.stop()
        server = self._runner.server
        if server is not None:
            for connection in server.connections:
                connection.force_close()
        log.info("API listener closed")

    async def sync(self, down: bool) -> None:
        """Make the listener match the board's ``down`` fault."""
        if down:
            await self.close()
        else:
            await self.open()

    async def cleanup(self) -> None:
        """Stop for good."""
        await self.close()
        await self._runner.cleanup()
