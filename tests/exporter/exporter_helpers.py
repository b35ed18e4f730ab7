"""Plain helpers shared by the exporter tests (fixtures live in conftest.py)."""

import asyncio
import functools
import importlib.util
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

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


@functools.cache
def _shared_conftest() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("voicedrive_tests_shared_conftest", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_binary(name: str) -> str:
    """tests/conftest.py's require_binary (fails, never skips).

    This folder's conftest.py takes the module name ``conftest`` once pytest has loaded it, so
    the shared one is loaded by path here.
    """
    found: str = _shared_conftest().require_binary(name)
    return found
