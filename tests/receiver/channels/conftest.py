"""Fixtures for the channel tests: the fakes, a message factory and config parsing."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from receiver.fakes.slack import FakeSlack
from receiver.fakes.twilio import FakeTwilio
from voicedrive_common.confload import Node
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels import CHANNEL_TYPES
from voicedrive_receiver.channels.base import (
    Channel,
    OutboundMessage,
    Recipient,
    RenderedMessage,
    Status,
)

HOTLINE = "+819012345678"


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A running Slack stand-in."""
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    """A running Twilio stand-in."""
    async with FakeTwilio() as fake:
        yield fake


def make_message(
    *,
    text: str = "【VoiceDrive L3 重大】通知の配信に失敗",
    subject: str = "",
    html: str = "",
    extra: dict[str, Any] | None = None,
    address: Secret | str = "",
    contact: str = "hotline",
    status: Status = "firing",
    level: int = 3,
    delivery_id: str = "d-0001",
    channel: str = "test",
) -> OutboundMessage:
    """An outbound message with sensible defaults."""
    return OutboundMessage(
        delivery_id=delivery_id,
        channel=channel,
        recipient=Recipient(contact=contact, address=address),
        status=status,
        level=level,
        incident_id="INC-20250901-0001",
        rendered=RenderedMessage(subject=subject, text=text, html=html, extra=extra or {}),
    )


@pytest.fixture
def message() -> Callable[..., OutboundMessage]:
    """``message(text=..., address=...)`` builds an OutboundMessage."""
    return make_message


def parse_settings(kind: str, mapping: dict[str, Any], *, name: str = "test") -> Any:
    """Parse a channel's config mapping as the receiver's config loader does."""
    return CHANNEL_TYPES[kind].parse(Node(dict(mapping), f"channels.{name}"))


async def create_channel(kind: str, mapping: dict[str, Any], *, name: str = "test") -> Channel:
    """Parse and create a channel."""
    return await CHANNEL_TYPES[kind].create(parse_settings(kind, mapping, name=name), name=name)


@pytest.fixture
async def channel_factory() -> AsyncIterator[Callable[..., Any]]:
    """``await channel_factory(kind, mapping)`` -> a ready channel, closed after the test."""
    created: list[Channel] = []

    async def factory(kind: str, mapping: dict[str, Any], *, name: str = "test") -> Channel:
        channel = await create_channel(kind, mapping, name=name)
        created.append(channel)
        return channel

    yield factory
    for channel in created:
        await channel.close()
