"""SMS channel against the local Twilio stand-in (Messages API)."""

import logging
from collections.abc import Callable
from typing import Any

import pytest

from receiver.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels.base import OutboundMessage

Factory = Callable[..., Any]
MessageFn = Callable[..., OutboundMessage]
HOTLINE = "+819012345678"
SENDER = "+815012345678"


async def sms_channel(factory: Factory, fake: FakeTwilio, **extra: Any) -> Any:
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": SENDER,
        "api_url": fake.api_url,
        **extra,
    }
    return await factory("sms", config)


async def test_sms_is_created_with_basic_auth_form_fields_and_sid(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await sms_channel(channel_factory, fake_twilio)
    result = await channel.send(message(text="障害発生", address=Secret(HOTLINE)))
    assert result.ok, fake_twilio.requests[-1].problem
    assert result.upstream_id is not None
    assert result.upstream_id.startswith("SM")
    [request] = fake_twilio.accepted
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.form == {"To": HOTLINE, "From": SENDER, "Body": "障害発生"}


async def test_messaging_service_sid_replaces_from(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "messaging_service_sid": "MG" + "0" * 32,
        "api_url": fake_twilio.api_url,
    }
    channel = await channel_factory("sms", config)
    assert (await channel.send(message(address=Secret(HOTLINE)))).ok
    assert fake_twilio.accepted[0].form["MessagingServiceSid"] == "MG" + "0" * 32
    assert "From" not in fake_twilio.accepted[0].form


async def test_body_is_cut_to_the_segment_cap(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await sms_channel(channel_factory, fake_twilio, max_segments=2)
    result = await channel.send(message(text="あ" * 300, address=Secret(HOTLINE)))
    assert result.ok
    assert fake_twilio.accepted[0].form["Body"] == "あ" * 133 + "…"
    assert "UCS-2, 2 segments, truncated" in result.detail


async def test_429_gives_retry_after_from_header(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await sms_channel(channel_factory, fake_twilio)
    fake_twilio.answer_next("rate_limited", retry_after=3)
    result = await channel.send(message(address=Secret(HOTLINE)))
    assert (result.ok, result.retry_after, result.permanent) == (False, 3.0, False)
    assert "error 20429" in result.detail


async def test_5xx_is_retryable(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await sms_channel(channel_factory, fake_twilio)
    fake_twilio.answer_next("server_error", status=503)
    result = await channel.send(message(address=Secret(HOTLINE)))
    assert (result.ok, result.permanent) == (False, False)


async def test_invalid_to_is_permanent_and_number_stays_out_of_detail_and_logs(
    fake_twilio: FakeTwilio,
    channel_factory: Factory,
    message: MessageFn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = await sms_channel(channel_factory, fake_twilio)
    result = await channel.send(message(address=Secret("090-1234-5678")))
    assert (result.ok, result.permanent) == (False, True)
    assert "HTTP 400 error 21211" in result.detail
    # Twilio's own message quotes the number; none of it may leak.
    assert "090-1234-5678" in fake_twilio.requests[0].form["To"]
    for text in (result.detail, caplog.text):
        assert "090-1234-5678" not in text
        assert AUTH_TOKEN not in text


async def test_error_body_on_200_is_failure(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await sms_channel(channel_factory, fake_twilio)
    fake_twilio.answer_next("error_on_200")
    result = await channel.send(message(address=Secret(HOTLINE)))
    assert not result.ok
    assert "without a sid" in result.detail


async def test_wrong_auth_token_is_permanent(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": "wrong-token-123",
        "from": SENDER,
        "api_url": fake_twilio.api_url,
    }
    channel = await channel_factory("sms", config)
    result = await channel.send(message(address=Secret(HOTLINE)))
    assert (result.ok, result.permanent) == (False, True)
    assert result.detail.startswith("twilio Messages: HTTP 401 error 20003")


async def test_refused_connection_is_retryable(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await sms_channel(channel_factory, fake_twilio)
    await fake_twilio.stop()
    result = await channel.send(message(address=Secret(HOTLINE)))
    assert (result.ok, result.permanent) == (False, False)
    assert "connection failed" in result.detail


def test_config_needs_from_or_messaging_service_sid() -> None:
    from voicedrive_common.confload import Node
    from voicedrive_receiver.channels.sms import SmsType

    node = Node({"account_sid": "AC1", "auth_token": "t"}, "channels.sms")
    with pytest.raises(ConfigError, match=r"channels.sms.from: is required"):
        SmsType().parse(node)


def test_config_segment_cap_is_bounded() -> None:
    from voicedrive_common.confload import Node
    from voicedrive_receiver.channels.sms import SmsType

    node = Node(
        {"account_sid": "AC1", "auth_token": "t", "from": "+1", "max_segments": 0}, "channels.sms"
    )
    with pytest.raises(ConfigError, match=r"channels.sms.max_segments: must be at least 1"):
        SmsType().parse(node)
