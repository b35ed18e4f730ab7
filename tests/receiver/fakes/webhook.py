"""A generic JSON webhook endpoint (``POST /hook``) for the webhook channel.

With ``token`` set, a request without ``Authorization: Bearer <token>`` gets 401. Answers
(``answer_next``): ``ok`` (200), ``rate_limited`` (429, option ``retry_after``),
``server_error`` (option ``status``, default 502), ``error`` (option ``status``, default 422).
"""

from aiohttp import web

from ._base import FakeServer


class FakeWebhook(FakeServer):
    """Records JSON posts to ``/hook``."""

    def __init__(self, *, token: str | None = None) -> None:
        super().__init__()
        self.token = token

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return self.base_url + "/hook"

    def routes(self, app: web.Application) -> None:
        """One endpoint."""
        app.router.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        self.requests.append(recorded)
        if self.token is not None and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            recorded.problem = "bad token"
            return web.json_response({"error": "unauthorized"}, status=401)
        if not isinstance(recorded.json, dict):
            recorded.problem = "not a JSON object"
            return web.json_response({"error": "bad request"}, status=400)
        kind, options = self._next_answer()
        if kind == "ok":
            return web.json_response({"accepted": True})
        if kind == "rate_limited":
            headers = {"Retry-After": str(options.get("retry_after", 3))}
            return web.json_response({"error": "slow down"}, status=429, headers=headers)
        if kind == "server_error":
            return web.Response(status=options.get("status", 502), text="bad gateway")
        if kind == "error":
            return web.json_response({"error": "rejected"}, status=options.get("status", 422))
        raise ValueError(f"unknown answer {kind!r}")
