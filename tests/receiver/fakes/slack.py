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
- ``hang``: accept (chat.postMessage: post) at once, answer only after option ``seconds``
  (default 1), to test client timeouts after the upstream accepted.

The workspace: ``channels`` maps conversation IDs to names (``C0EMERGENCY`` is
``phase2-emergency``); ``chat.postMessage`` takes an ID, ``#name`` or ``name`` (an unknown name
gets a new ID, as if the channel existed) and answers the ID; message ``ts`` follow ``now``
(time.time by default), unique and increasing. ``metadata`` must be
``{"event_type": str, "event_payload": object}`` (else ``invalid_metadata_format``).

``GET /api/conversations.history`` (bearer token, or ``token`` in the query): ``channel`` must be
an ID the bot is a member of (``channel_not_found`` / ``not_in_channel``), the token needs
``channels:history`` (``missing_scope`` with ``needed`` and ``provided``); ``oldest`` /
``latest`` / ``inclusive``, ``limit`` (1-999, default 100, else ``invalid_limit``) and
``cursor`` (opaque, else ``invalid_cursor``); newest first, ``has_more`` and
``response_metadata.next_cursor``; ``metadata`` only with ``include_all_metadata=true``.
``answer_history_next(kind)``: ``ok``, ``rate_limited`` (429 ``ratelimited``), ``error``
(option ``error``), ``server_error``, ``hang`` (option ``seconds``).
``posted_by_delivery`` counts accepted posts by their metadata's ``delivery_id``.
"""

import asyncio
import base64
import binascii
import itertools
import json
import time
from collections import Counter, deque
from collections.abc import Callable
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


HISTORY_SCOPE = "channels:history"
DEFAULT_SCOPES = ("chat:write", HISTORY_SCOPE)


class FakeSlack(FakeServer):
    """Slack's incoming webhook and Web API on one loopback server."""

    def __init__(
        self,
        *,
        token: str = BOT_TOKEN,
        webhook_path: str = WEBHOOK_PATH,
        now: Callable[[], float] = time.time,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
    ) -> None:
        super().__init__()
        self.token = token
        self.webhook_path = webhook_path
        self.now = now
        self.scopes = scopes
        self.channels: dict[str, str] = {"C0EMERGENCY": "phase2-emergency"}
        # Conversations the bot was removed from: history answers not_in_channel.
        self.left: set[str] = set()
        # Every accepted post, by conversation ID, oldest first.
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.posted_by_delivery: Counter[str] = Counter()
        self._last_ts = 0.0
        self._new_ids = itertools.count(1)
        self._history_script: deque[tuple[str, dict[str, Any]]] = deque()

    def answer_history_next(self, kind: str, *, times: int = 1, **options: Any) -> None:
        """Answer the next ``times`` well-formed conversations.history calls with ``kind``."""
        for _ in range(times):
            self._history_script.append((kind, options))

    def conversation_id(self, channel: str) -> str:
        """The ID of a channel given as an ID, ``#name`` or ``name`` (created when unknown)."""
        if channel in self.channels:
            return channel
        name = channel.removeprefix("#")
        for cid, known in self.channels.items():
            if known == name:
                return cid
        cid = f"C0NEW{next(self._new_ids):06d}"
        self.channels[cid] = name
        return cid

    def add_message(
        self, channel: str, *, ts: float, text: str = "", metadata: Any = None
    ) -> dict[str, Any]:
        """Put a message into a conversation's history directly (as another poster would)."""
        item: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "ts": f"{ts:.6f}",
            "bot_id": "B0VOICEDRIVE",
            "app_id": "A0VOICEDRIVE",
        }
        if metadata is not None:
            item["metadata"] = metadata
        self.history.setdefault(self.conversation_id(channel), []).append(item)
        self.history[self.conversation_id(channel)].sort(key=lambda m: float(m["ts"]))
        self.changed.set()
        return item

    def _next_ts(self) -> str:
        # Slack's ts is the post time in microseconds, unique within a conversation.
        value = max(self.now(), self._last_ts + 0.000001)
        self._last_ts = value
        return f"{value:.6f}"

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
        app.router.add_get("/api/conversations.history", self._history)

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
        metadata = body.get("metadata")
        if metadata is not None and not _metadata_ok(metadata):
            recorded.problem = "metadata is not {event_type, event_payload}"
            return _api({"ok": False, "error": "invalid_metadata_format"})
        kind, options = self._next_answer()
        if kind in ("ok", "hang"):
            cid = self.conversation_id(str(body["channel"]))
            ts = self._next_ts()
            self.add_message(cid, ts=float(ts), text=body["text"], metadata=metadata)
            if metadata is not None:
                delivery = metadata["event_payload"].get("delivery_id")
                if isinstance(delivery, str):
                    self.posted_by_delivery[delivery] += 1
            if kind == "hang":
                # Posted, but answered late (option ``seconds``, default 1): a client timeout
                # after Slack accepted the message.
                await asyncio.sleep(options.get("seconds", 1.0))
            return _api({"ok": True, "channel": cid, "ts": ts, "message": {"text": body["text"]}})
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

    async def _history(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        self.lookups.append(recorded)
        query = request.query
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else query.get("token")
        if not token:
            recorded.problem = "no token"
            return _api({"ok": False, "error": "not_authed"})
        if token != self.token:
            recorded.problem = "wrong token"
            return _api({"ok": False, "error": "invalid_auth"})
        if HISTORY_SCOPE not in self.scopes:
            recorded.problem = "missing scope"
            return _api(
                {
                    "ok": False,
                    "error": "missing_scope",
                    "needed": HISTORY_SCOPE,
                    "provided": ",".join(self.scopes),
                }
            )
        channel = query.get("channel", "")
        if channel not in self.channels:
            # conversations.* take an ID; a #name is not found.
            recorded.problem = "channel is not a known conversation ID"
            return _api({"ok": False, "error": "channel_not_found"})
        if channel in self.left:
            recorded.problem = "bot not in channel"
            return _api({"ok": False, "error": "not_in_channel"})
        try:
            oldest = float(query.get("oldest", "0"))
            latest = float(query["latest"]) if "latest" in query else None
        except ValueError:
            recorded.problem = "oldest/latest not a timestamp"
            return _api({"ok": False, "error": "invalid_ts_oldest"})
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 999:
            recorded.problem = "limit out of range"
            return _api({"ok": False, "error": "invalid_limit"})
        offset = _decode_cursor(query.get("cursor", ""))
        if offset is None:
            recorded.problem = "bad cursor"
            return _api({"ok": False, "error": "invalid_cursor"})
        inclusive = _truthy(query.get("inclusive", ""))
        with_metadata = _truthy(query.get("include_all_metadata", ""))
        kind, options = self._history_script.popleft() if self._history_script else ("ok", {})
        if kind == "hang":
            await asyncio.sleep(options.get("seconds", 1.0))
            kind = "ok"
        if kind == "rate_limited":
            return _api(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(options.get("retry_after", 3))},
            )
        if kind == "server_error":
            return web.Response(status=options.get("status", 503), text="<html>Unavailable</html>")
        if kind == "error":
            return _api({"ok": False, "error": options.get("error", "internal_error")})
        if kind != "ok":
            raise ValueError(f"unknown answer {kind!r}")

        def within(item: dict[str, Any]) -> bool:
            ts = float(item["ts"])
            after = ts >= oldest if inclusive else ts > oldest
            before = latest is None or (ts <= latest if inclusive else ts < latest)
            return after and before

        matching = [m for m in reversed(self.history.get(channel, [])) if within(m)]
        page = matching[offset : offset + limit]
        more = offset + limit < len(matching)
        cursor = _encode_cursor(offset + limit) if more else ""
        messages = []
        for item in page:
            shown = dict(item)
            if not with_metadata:
                shown.pop("metadata", None)
            messages.append(shown)
        return _api(
            {
                "ok": True,
                "messages": messages,
                "has_more": more,
                "pin_count": 0,
                "channel_actions_ts": None,
                "channel_actions_count": 0,
                "response_metadata": {"next_cursor": cursor},
            }
        )


def _truthy(value: str) -> bool:
    return value.lower() in ("true", "1")


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"next_offset:{offset}".encode()).decode("ascii")


def _decode_cursor(cursor: str) -> int | None:
    if not cursor:
        return 0
    try:
        text = base64.b64decode(cursor, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    prefix, _, number = text.partition(":")
    if prefix != "next_offset" or not number.isdigit():
        return None
    return int(number)


def _metadata_ok(metadata: Any) -> bool:
    return (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and bool(metadata["event_type"])
        and isinstance(metadata.get("event_payload"), dict)
    )


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
