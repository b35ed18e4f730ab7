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
