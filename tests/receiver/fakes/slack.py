"""A Slack stand-in: incoming webhooks and ``chat.postMessage``, answering as Slack does.

Incoming webhook (``POST /services/T000/B000/XXXX``): 200 ``ok`` text; errors as text codes,
e.g. 400 ``invalid_payload`` / ``no_text``, 404 ``channel_not_found`` / ``no_service``, 410
``channel_is_archived``, 429 (``Retry-After``), 500 ``rollup_error``.

Web API (``POST /api/chat.postMessage``, ``Authorization: Bearer xoxb-...``): always 200 JSON,
``{"ok": true, "channel", "ts", "message"}`` or ``{"ok": false, "error": "..."}``, except 429
``{"ok": false, "error": "ratelimited"}`` with ``Retry-After``.

``answer_next(kind)`` kinds: ``ok``, ``rate_limited`` (option ``retry_after``, default 3),
``server_error`` (5xx; option ``status``), ``error`` (option ``error``, e.g.
``channel_not_found``: a 4xx text code for webhooks, ``ok: false`` on 200 for the API),
``error_on_200`` (HTTP 200 whose body is an error, option ``error``).
- ``hang``: answer only after option ``seconds`` (default 1), to test client timeouts.
"""

import asyncio
import itertools
import json
from typing import Any

from aiohttp import web

from ._base import FakeServer, Recorded

WEBHOOK_PATH = "/services/T0VOICE/B0DRIVE/fakewebhooksecret0001"
BOT_TOKEN = "xoxb-1111-2222-fakebottoken"
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_TEXT = 40000
WEBHOOK_ERROR_STATUS = {
    "invalid_payload": 400,
    "no_text": 400,
    "invalid_token": 403,
    "action_prohibited": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "channel_is_archived": 410,
}


class FakeSlack(FakeServer):
    """Slack's incoming webhook and Web API on one loopback server."""

    def __init__(self, *, token: str = BOT_TOKEN, webhook_path: str = WEBHOOK_PATH) -> None:
        super().__init__()
        self.token = token
        self.webhook_path = webhook_path
        self._ts = itertools.count(1)

    @property
    def webhook_url(self) -> str:
        """The incoming webhook URL (a secret in real life)."""
        return self.base_url + self.webhook_path

    @property
    def api_url(self) -> str:
        """The Web API base, for the channel's ``api_url``."""
        return self.base_url + "/api"

    def routes(self, app: web.Application) -> None:
        """Both endpoints."""
        app.router.add_post("/services/{team}/{bot}/{secret}", self._webhook)
        app.router.add_post("/api/chat.postMessage", self._post_message)

    async def _webhook(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        self.requests.append(recorded)
        if request.path != self.webhook_path:
            recorded.problem = "unknown webhook"
            return web.Response(status=404, text="no_service")
        problem = _payload_problem(recorded)
        if problem:
            recorded.problem = problem
            return web.Response(status=400, text="invalid_payload")
        kind, options = self._next_answer()
        if kind == "hang":
            # Answer late (option ``seconds``, default 1), then succeed: a client timeout.
            await asyncio.sleep(options.get("seconds", 1.0))
            kind = "ok"
        if kind == "ok":
            return web.Response(text="ok")
        if kind == "rate_limited":
            return web.Response(
                status=429,
                text="rate_limited",
                headers={"Retry-After": str(options.get("retry_after", 3))},
            )
        if kind == "server_error":
            return web.Response(status=options.get("status", 500), text="rollup_error")
        if kind == "error":
            error = options.get("error", "channel_not_found")
            return web.Response(status=WEBHOOK_ERROR_STATUS.get(error, 400), text=error)
        if kind == "error_on_200":
            return web.Response(status=200, text=options.get("error", "invalid_payload"))
        raise ValueError(f"unknown answer {kind!r}")

    async def _post_message(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        self.requests.append(recorded)
        auth = request.headers.get("Authorization", "")
        if not auth:
            recorded.problem = "no token"
            return _api({"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.token}":
            recorded.problem = "wrong token"
            return _api({"ok": False, "error": "invalid_auth"})
        if request.content_type != "application/json":
            recorded.problem = f"content type {request.content_type}"
            return _api({"ok": False, "error": "invalid_arg_name"})
        body = recorded.json if isinstance(recorded.json, dict) else None
        if body is None:
            recorded.problem = "body is not a JSON object"
            return _api({"ok": False, "error": "invalid_json"})
        if not body.get("channel"):
            recorded.problem = "no channel"
            return _api({"ok": False, "error": "channel_not_found"})
        problem = _payload_problem(recorded)
        if problem:
            recorded.problem = problem
            error = "msg_too_long" if "text longer" in problem else "invalid_blocks"
            if "no text" in problem:
                error = "no_text"
            return _api({"ok": False, "error": error})
        kind, options = self._next_answer()
        if kind == "hang":
            # Answer late (option ``seconds``, default 1), then succeed: a client timeout.
            await asyncio.sleep(options.get("seconds", 1.0))
            kind = "ok"
        if kind == "ok":
            ts = f"1756684800.{next(self._ts):06d}"
            return _api(
                {"ok": True, "channel": "C0EMERGENCY", "ts": ts, "message": {"text": body["text"]}}
            )
        if kind == "rate_limited":
            return _api(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(options.get("retry_after", 3))},
            )
        if kind == "server_error":
            status = options.get("status", 503)
            return web.Response(status=status, text="<html>Service Unavailable</html>")
        if kind in ("error", "error_on_200"):
            return _api({"ok": False, "error": options.get("error", "channel_not_found")})
        raise ValueError(f"unknown answer {kind!r}")


def _payload_problem(recorded: Recorded) -> str:
    """What Slack would refuse in a ``{text, blocks}`` payload ("" if nothing)."""
    if recorded.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
        return "content type is not application/json"
    body = recorded.json
    if not isinstance(body, dict):
        return "body is not a JSON object"
    text = body.get("text")
    blocks = body.get("blocks")
    if not text and not blocks:
        return "no text"
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return "text longer than 40000"
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
            return "more than 50 blocks"
        for block in blocks:
            if not isinstance(block, dict) or "type" not in block:
                return "block without type"
            inner: Any = block.get("text")
            if block["type"] == "section" and (
                not isinstance(inner, dict) or len(str(inner.get("text", ""))) > MAX_SECTION_TEXT
            ):
                return "section text longer than 3000"
    return ""


def _api(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )
