"""The aiohttp plumbing every HTTP fake shares."""

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    # The query string, decoded (``DateSent>`` stays a key, as Twilio reads it).
    query: dict[str, str] = field(default_factory=dict)
    # Why the fake refused the request's shape ("" when the shape was right).
    problem: str = ""


class FakeServer:
    """An aiohttp app on 127.0.0.1:0 with recorded requests and scripted answers."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        # Read-only lookups (Slack conversations.history, the Twilio Messages list) are kept
        # apart, so ``requests`` stays the list of things sent.
        self.lookups: list[Recorded] = []
        # Set whenever the fake accepts something new (the subclass says what): tests wait on it.
        self.changed = asyncio.Event()
        self._script: deque[tuple[str, dict[str, Any]]] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def answer_next(self, kind: str, *, times: int = 1, **options: Any) -> None:
        """Answer the next ``times`` well-formed requests with ``kind`` (see the subclass)."""
        for _ in range(times):
            self._script.append((kind, options))

    def _next_answer(self) -> tuple[str, dict[str, Any]]:
        return self._script.popleft() if self._script else ("ok", {})

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[Recorded]:
        """Requests whose shape was right."""
        return [r for r in self.requests if not r.problem]

    def routes(self, app: web.Application) -> None:
        """Register the fake's routes."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @staticmethod
    async def record(request: web.Request) -> Recorded:
        """Read the request in full."""
        body = await request.read()
        recorded = Recorded(
            method=request.method,
            path=request.path,
            headers=CIMultiDict(request.headers),
            body=body,
            query=dict(request.query),
        )
        if request.content_type == "application/json":
            try:
                recorded.json = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                recorded.json = None
        elif request.content_type == "application/x-www-form-urlencoded":
            recorded.form = {k: str(v) for k, v in (await request.post()).items()}
        return recorded
