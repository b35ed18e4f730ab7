"""A generic JSON webhook: POST one document per delivery, optional bearer token; 2xx is success.

The body (``version`` "1"): ``delivery_id``, ``channel``, ``contact``, ``status``, ``level``,
``incident_id``, ``subject``, ``text``, and ``extra`` from the templates. The header
``X-VoiceDrive-Delivery-Id`` (also ``Idempotency-Key``) lets the receiving end drop a
redelivery.
"""

import json
from dataclasses import dataclass
from typing import Any

from voicedrive_common.confload import Node
from voicedrive_common.secrets import SecretRef
from voicedrive_receiver.channels import _http
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage


@dataclass(frozen=True)
class WebhookSettings:
    """Where to POST and how to authenticate."""

    url: SecretRef
    bearer_token: SecretRef | None = None
    timeout: float = 10.0


class WebhookType:
    """Registry entry for ``type: webhook``."""

    kind = "webhook"

    def parse(self, node: Node) -> WebhookSettings:
        """Settings from the channel's config mapping."""
        url = node.secret("url")
        assert url is not None
        if url.inline is not None and "${" not in url.inline:
            _http.check_http_url(url.inline, url.path)
        settings = WebhookSettings(
            url=url,
            bearer_token=node.secret("bearer_token", required=False),
            timeout=node.duration("timeout", 10.0, lo=0.1),
        )
        node.done()
        return settings

    async def create(self, settings: WebhookSettings, *, name: str) -> "WebhookChannel":
        """A channel with its URL and token resolved."""
        url = _http.check_http_url(settings.url.resolve().reveal(), settings.url.path)
        token = settings.bearer_token.resolve().reveal() if settings.bearer_token else None
        return WebhookChannel(name, settings, url=str(url), token=token)


def document(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body for one delivery (no recipient address, only the contact key)."""
    return {
        "version": "1",
        "delivery_id": message.delivery_id,
        "channel": message.channel,
        "contact": message.recipient.contact,
        "status": message.status,
        "level": message.level,
        "incident_id": message.incident_id,
        "subject": message.rendered.subject,
        "text": message.rendered.text,
        "extra": message.rendered.extra,
    }


class WebhookChannel:
    """POSTs one JSON document per delivery."""

    def __init__(self, name: str, settings: WebhookSettings, *, url: str, token: str | None):
        self.name = name
        self._url = url
        self._headers = {
            "Content-Type": "application/json; charset=utf-8",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session = _http.new_session(settings.timeout)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """POST the document; 2xx is success."""
        headers = {
            **self._headers,
            "X-VoiceDrive-Delivery-Id": message.delivery_id,
            "Idempotency-Key": message.delivery_id,
        }
        reply = await _http.request(
            self._session,
            "POST",
            self._url,
            what="webhook",
            data=json.dumps(document(message), ensure_ascii=False).encode("utf-8"),
            headers=headers,
        )
        if isinstance(reply, DeliveryResult):
            return reply
        if 200 <= reply.status < 300:
            return DeliveryResult(ok=True, detail=f"webhook: HTTP {reply.status}")
        return _http.failure(reply.status, reply.headers, what="webhook")

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()
