"""Helpers for the exporter tests: real loopback HTTP targets and injected probe dependencies."""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import psutil
import pytest
from aiohttp import web
from exporter_helpers import LogCapture, RawServe, Serve, StreamHandler

from voicedrive_common.clock import SystemClock
from voicedrive_common.logs import LogfmtFormatter
from voicedrive_exporter.probes.base import ProbeDeps
from voicedrive_exporter.probes.http import new_session


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on 127.0.0.1 port 0; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServe]:
    """Start a raw asyncio TCP server on 127.0.0.1 port 0; returns its port."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(handler: StreamHandler) -> int:
        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await handler(reader, writer)

        server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()


@pytest.fixture
async def deps() -> AsyncIterator[ProbeDeps]:
    """Real session, real clock, real psutil."""
    session = new_session(user_agent="voicedrive-exporter-test")
    yield ProbeDeps(session=session, clock=SystemClock(), system=psutil)
    await session.close()


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Capture every log record through the production logfmt formatter."""
    capture = LogCapture()
    handler = logging.StreamHandler(capture.stream)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(handler)
    root.setLevel(old_level)
