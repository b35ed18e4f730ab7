"""Generic webhook channel against a local JSON endpoint."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from receiver.fakes.webhook import FakeWebhook
from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.channels.base import OutboundMessage
from voicedrive_receiver.channels.webhook import WebhookType

Factory = Callable[..., Any]
MessageFn = Callable[..., OutboundMessage]
TOKEN = "hook-token-0123456789"


@pytest.fixture
async def hook() -> AsyncIterator[FakeWebhook]:
    async with FakeWebhook(token=TOKEN) as fake:
        yield fake


async def webhook_channel(factory: Factory, hook: FakeWebhook) -> Any:
    return await factory("webhook", {"url": hook.url, "bearer_token": TOKEN})


async def test_posts_json_document_with_bearer_token_and_delivery_id(
    hook: FakeWebhook, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, hook)
    result = await channel.send(message(text="本文", subject="件名", delivery_id="d-42"))
    assert result.ok, hook.requests[-1].problem
    [request] = hook.accepted
    assert request.headers["X-VoiceDrive-Delivery-Id"] == "d-42"
    assert request.json == {
        "version": "1",
        "delivery_id": "d-42",
        "channel": "test",
        "contact": "hotline",
        "status": "firing",
        "level": 3,
        "incident_id": "INC-20250901-0001",
        "subject": "件名",
        "text": "本文",
        "extra": {},
    }


async def test_recipient_address_is_not_sent(
    hook: FakeWebhook, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, hook)
    await channel.send(message(address="+819012345678"))
    assert b"+819012345678" not in hook.accepted[0].body


async def test_429_gives_retry_after(
    hook: FakeWebhook, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, hook)
    hook.answer_next("rate_limited", retry_after=3)
    result = await channel.send(message())
    assert (result.ok, result.retry_after, result.permanent) == (False, 3.0, False)


async def test_5xx_is_retryable(
    hook: FakeWebhook, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, hook)
    hook.answer_next("server_error", status=502)
    result = await channel.send(message())
    assert (result.ok, result.permanent, result.detail) == (False, False, "webhook: HTTP 502")


async def test_4xx_is_permanent(
    hook: FakeWebhook, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, hook)
    hook.answer_next("error", status=422)
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, True)


async def test_wrong_token_is_permanent_and_not_in_detail(
    hook: FakeWebhook, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await channel_factory("webhook", {"url": hook.url, "bearer_token": "nope-nope"})
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, True)
    assert "nope-nope" not in result.detail


def test_config_rejects_a_non_http_url() -> None:
    with pytest.raises(ConfigError, match=r"channels.hook.url: must be an absolute http"):
        WebhookType().parse(Node({"url": "ftp://example.org/x"}, "channels.hook"))
