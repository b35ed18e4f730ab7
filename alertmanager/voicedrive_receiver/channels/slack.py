"""Slack: an incoming webhook or the Web API's ``chat.postMessage`` with a bot token.

Incoming webhooks answer ``ok`` as text and errors as text codes with a 4xx status
(``invalid_payload``, ``channel_not_found``, ``channel_is_archived``...). The Web API answers
HTTP 200 even for errors, with ``{"ok": false, "error": "..."}``: the body decides. Both
answer 429 with ``Retry-After`` in seconds when rate limited.

Reconciliation (Web API only): every ``chat.postMessage`` carries message metadata
(``event_type`` ``voicedrive_delivery``, ``event_payload.delivery_id``), and an in-doubt
message is looked up with ``conversations.history`` (``include_all_metadata=true``, from
``oldest``, paging by ``response_metadata.next_cursor``, at most ``HISTORY_MAX_PAGES`` pages).
That method takes a conversation ID, not a ``#name``: the ID comes from the address when it is
one, or from the answer to an earlier post to that name by this process. The bot token needs
``channels:history`` (``groups:history`` for a private channel) and the bot must be a member.
An incoming webhook cannot be read back: it stays at least once.
"""

import json
import logging
import re
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

METADATA_EVENT_TYPE = "voicedrive_delivery"
# Bounded lookup: pages of conversations.history read before giving up (then: unknown).
HISTORY_MAX_PAGES = 5
HISTORY_PAGE_LIMIT = 200
# A conversation ID (C public, G private/legacy, D direct message), as conversations.* want it.
CONVERSATION_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")

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
        return SlackApiChannel(name, settings, webhook_url=None, token=token)


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
        # Conversation IDs learnt from chat.postMessage answers, by the address posted to.
        self._conversation_ids: dict[str, str] = {}

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
        channel = self._destination(message)
        body = {
            "channel": channel,
            **payload,
            "metadata": {
                "event_type": METADATA_EVENT_TYPE,
                "event_payload": {"delivery_id": message.delivery_id},
            },
        }
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
            answered = parsed.get("channel")
            if isinstance(answered, str) and CONVERSATION_ID.match(answered):
                self._conversation_ids[channel] = answered
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

    def _destination(self, message: OutboundMessage) -> str:
        return _http.recipient_address(message.recipient) or self._settings.channel

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()


class SlackApiChannel(SlackChannel):
    """The Web API variant: it can also tell whether an in-doubt message already arrived."""

    async def find_delivered(self, message: OutboundMessage, since: float) -> DeliveryResult | None:
        """Search the conversation's history from ``since`` for the message's delivery id."""
        what = "slack conversations.history"
        destination = self._destination(message)
        conversation = (
            destination
            if CONVERSATION_ID.match(destination)
            else self._conversation_ids.get(destination)
        )
        if conversation is None:
            return DeliveryResult(
                ok=False, detail=f"{what}: the destination is a name, not a conversation ID"
            )
        params = {
            "channel": conversation,
            "oldest": f"{max(0.0, since):.6f}",
            "inclusive": "true",
            "include_all_metadata": "true",
            "limit": str(HISTORY_PAGE_LIMIT),
        }
        headers = {"Authorization": f"Bearer {self._token}"}
        for _ in range(HISTORY_MAX_PAGES):
            reply = await _http.request(
                self._session,
                "GET",
                f"{self._settings.api_url}/conversations.history",
                what=what,
                params=params,
                headers=headers,
            )
            if isinstance(reply, DeliveryResult):
                return DeliveryResult(ok=False, detail=reply.detail)
            parsed = _http.json_object(reply.text)
            if reply.status != 200 or parsed is None:
                return DeliveryResult(ok=False, detail=f"{what}: HTTP {reply.status}")
            if parsed.get("ok") is not True:
                code = _http.safe_code(parsed.get("error", "")) or "unknown_error"
                return DeliveryResult(ok=False, detail=f"{what}: error {code}")
            messages = parsed.get("messages")
            if not isinstance(messages, list):
                return DeliveryResult(ok=False, detail=f"{what}: no messages list")
            for item in messages:
                if _carries_delivery(item, message.delivery_id):
                    ts = item.get("ts")
                    return DeliveryResult(
                        ok=True,
                        detail=f"{what}: found",
                        upstream_id=str(ts) if ts is not None else None,
                    )
            more = parsed.get("has_more")
            cursor = _next_cursor(parsed)
            if more is False or (more is None and not cursor):
                return None
            if not cursor:
                return DeliveryResult(ok=False, detail=f"{what}: has_more without a cursor")
            params["cursor"] = cursor
        return DeliveryResult(
            ok=False, detail=f"{what}: not found in {HISTORY_MAX_PAGES} pages, more remain"
        )


def _carries_delivery(item: object, delivery_id: str) -> bool:
    if not isinstance(item, dict):
        return False
    metadata = item.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT_TYPE:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("delivery_id") == delivery_id


def _next_cursor(parsed: dict[str, Any]) -> str:
    # Slack ends a listing with an empty next_cursor, or leaves response_metadata out.
    meta = parsed.get("response_metadata")
    cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
    return cursor if isinstance(cursor, str) else ""


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
