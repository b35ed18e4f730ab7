"""Slack: an incoming webhook or the Web API's ``chat.postMessage`` with a bot token.

Incoming webhooks answer ``ok`` as text and errors as text codes with a 4xx status
(``invalid_payload``, ``channel_not_found``, ``channel_is_archived``...). The Web API answers
HTTP 200 even for errors, with ``{"ok": false, "error": "..."}``: the body decides. Both
answer 429 with ``Retry-After`` in seconds when rate limited.
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import SecretRef
from voicedrive_receiver.channels import _http
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage
from voicedrive_receiver.rendering import (
    SLACK_MAX_BLOCKS,
    SLACK_MAX_SECTION,
    SLACK_MAX_TEXT,
    cut_text,
    slack_blocks,
)

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api"
DEFAULT_CHANNEL = "#phase2-emergency"
HEADER_MAX = 150

# Web API errors that are worth another try; every other error code is permanent.
RETRYABLE_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)


@dataclass(frozen=True)
class SlackSettings:
    """One Slack destination: exactly one of ``webhook_url`` and ``token``."""

    webhook_url: SecretRef | None
    token: SecretRef | None
    channel: str = DEFAULT_CHANNEL
    api_url: str = DEFAULT_API_URL
    timeout: float = 10.0
    username: str = ""
    icon_emoji: str = ""


class SlackType:
    """Registry entry for ``type: slack``."""

    kind = "slack"

    def parse(self, node: Node) -> SlackSettings:
        """Settings from the channel's config mapping."""
        webhook_url = node.secret("webhook_url", required=False)
        token = node.secret("token", required=False)
        if (webhook_url is None) == (token is None):
            raise node.error("webhook_url", "set exactly one of webhook_url and token")
        settings = SlackSettings(
            webhook_url=webhook_url,
            token=token,
            channel=node.text("channel", DEFAULT_CHANNEL),
            api_url=node.text("api_url", DEFAULT_API_URL).rstrip("/"),
            timeout=node.duration("timeout", 10.0, lo=0.1),
            username=node.text("username", ""),
            icon_emoji=node.text("icon_emoji", ""),
        )
        _http.check_http_url(settings.api_url, node.path + ".api_url")
        node.done()
        return settings

    async def create(self, settings: SlackSettings, *, name: str) -> "SlackChannel":
        """A channel with its secret resolved and its session open."""
        if settings.webhook_url is not None:
            secret = settings.webhook_url.resolve()
            url = _http.check_http_url(secret.reveal(), settings.webhook_url.path)
            return SlackChannel(name, settings, webhook_url=url, token=None)
        assert settings.token is not None
        token = settings.token.resolve().reveal()
        if not token.startswith(("xoxb-", "xoxp-")):
            raise ConfigError(settings.token.path, "must be a Slack bot token (xoxb-...)")
        return SlackChannel(name, settings, webhook_url=None, token=token)


class SlackChannel:
    """Posts one message per delivery."""

    def __init__(
        self, name: str, settings: SlackSettings, *, webhook_url: URL | None, token: str | None
    ) -> None:
        self.name = name
        self._settings = settings
        self._webhook_url = webhook_url
        self._token = token
        self._session: aiohttp.ClientSession = _http.new_session(settings.timeout)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Post the message; the result classifies any failure."""
        payload = build_payload(message)
        if self._webhook_url is not None:
            return await self._send_webhook(payload)
        return await self._send_api(message, payload)

    async def _send_webhook(self, payload: dict[str, Any]) -> DeliveryResult:
        assert self._webhook_url is not None
        reply = await _http.request(
            self._session,
            "POST",
            self._webhook_url,
            what="slack webhook",
            data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        if isinstance(reply, DeliveryResult):
            return reply
        body = reply.text.strip()
        if reply.status == 200 and body == "ok":
            return DeliveryResult(ok=True, detail="slack webhook: ok")
        if reply.status == 200:
            # An incoming webhook says "ok" and nothing else when it posted the message.
            code = _http.safe_code(body)
            permanent = bool(code) and code not in RETRYABLE_ERRORS
            return DeliveryResult(
                ok=False,
                detail=f"slack webhook: HTTP 200 with error {code or 'unexpected body'}",
                permanent=permanent,
            )
        return _http.failure(reply.status, reply.headers, what="slack webhook", code=body)

    async def _send_api(self, message: OutboundMessage, payload: dict[str, Any]) -> DeliveryResult:
        channel = _http.recipient_address(message.recipient) or self._settings.channel
        body = {"channel": channel, **payload}
        if self._settings.username:
            body["username"] = self._settings.username
        if self._settings.icon_emoji:
            body["icon_emoji"] = self._settings.icon_emoji
        reply = await _http.request(
            self._session,
            "POST",
            f"{self._settings.api_url}/chat.postMessage",
            what="slack chat.postMessage",
            data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Authorization": f"Bearer {self._token}",
            },
        )
        if isinstance(reply, DeliveryResult):
            return reply
        parsed = _http.json_object(reply.text)
        error = _http.safe_code(parsed.get("error", "")) if parsed else ""
        if reply.status != 200:
            return _http.failure(
                reply.status, reply.headers, what="slack chat.postMessage", code=error
            )
        if parsed is None:
            return DeliveryResult(ok=False, detail="slack chat.postMessage: body is not JSON")
        if parsed.get("ok") is True:
            ts = parsed.get("ts")
            return DeliveryResult(
                ok=True,
                detail="slack chat.postMessage: ok",
                upstream_id=str(ts) if ts is not None else None,
            )
        error = error or "unknown_error"
        retry = error in RETRYABLE_ERRORS
        return DeliveryResult(
            ok=False,
            detail=f"slack chat.postMessage: error {error}",
            permanent=not retry,
            retry_after=_http.retry_after(reply.headers) if retry else None,
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()


def build_payload(message: OutboundMessage) -> dict[str, Any]:
    """``{text, blocks}`` within Slack's limits, whatever the templates produced."""
    rendered = message.rendered
    text = cut_text(rendered.text or rendered.subject, SLACK_MAX_TEXT)
    raw_blocks = rendered.extra.get("blocks")
    if isinstance(raw_blocks, list) and raw_blocks:
        blocks = enforce_block_limits(raw_blocks)
    else:
        blocks = slack_blocks(rendered.text or rendered.subject)
    payload: dict[str, Any] = {"text": text or "VoiceDrive"}
    if blocks:
        payload["blocks"] = blocks
    return payload


def enforce_block_limits(blocks: list[Any]) -> list[dict[str, Any]]:
    """At most 50 blocks, section and header texts cut to their limits."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        block = dict(block)
        text = block.get("text")
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            limit = HEADER_MAX if block.get("type") == "header" else SLACK_MAX_SECTION
            block["text"] = {**text, "text": cut_text(text["text"], limit)}
        out.append(block)
    if len(out) > SLACK_MAX_BLOCKS:
        dropped = len(out) - (SLACK_MAX_BLOCKS - 1)
        out = out[: SLACK_MAX_BLOCKS - 1]
        out.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"… (+{dropped} blocks)"}}
        )
    return out
