"""Plain helpers shared by the exporter tests (fixtures live in conftest.py)."""

import asyncio
import io
from collections.abc import Awaitable, Callable

from aiohttp import web

Serve = Callable[[web.Application], Awaitable[str]]
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RawServe = Callable[[StreamHandler], Awaitable[int]]


class LogCapture:
    """Log lines as the exporter writes them (logfmt, with secret redaction)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        """Everything logged so far."""
        return self.stream.getvalue()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read whatever comes, never say a word (until the test closes it)."""
    del writer
    while await reader.read(4096):
        pass


def forwarder(upstream_port: int) -> StreamHandler:
    """A handler that pipes each connection both ways to ``127.0.0.1:upstream_port``."""

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return forward
