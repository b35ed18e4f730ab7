"""Phone channel against the local Twilio stand-in (Calls API with TwiML <Say>)."""

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from receiver.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels.base import OutboundMessage
from voicedrive_receiver.channels.phone import TWIML_MAX, twiml

Factory = Callable[..., Any]
MessageFn = Callable[..., OutboundMessage]
DIRECT_LINE = "+819011112222"


def parse_twiml(document: str) -> ET.Element:
    """Parse TwiML the channel produced."""
    return ET.fromstring(document)  # noqa: S314 - our own output, not untrusted input


async def phone_channel(factory: Factory, fake: FakeTwilio, **extra: Any) -> Any:
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": "+815012345678",
        "api_url": fake.api_url,
        **extra,
    }
    return await factory("phone", config)


async def test_call_reads_japanese_message_with_say(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await phone_channel(channel_factory, fake_twilio, loop=2)
    text = "レベル4、システム停止です。"
    result = await channel.send(message(text=text, address=Secret(DIRECT_LINE)))
    assert result.ok, fake_twilio.requests[-1].problem
    assert result.upstream_id is not None
    assert result.upstream_id.startswith("CA")
    [request] = fake_twilio.accepted
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert request.form["To"] == DIRECT_LINE
    say = parse_twiml(request.form["Twiml"]).find("Say")
    assert say is not None
    assert say.attrib == {"language": "ja-JP", "loop": "2"}
    assert say.text == text


async def test_twiml_escapes_xml_special_characters(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await phone_channel(channel_factory, fake_twilio)
    text = 'API <応答> & "遅延" </Say><Play>x</Play>'
    await channel.send(message(text=text, address=Secret(DIRECT_LINE)))
    document = fake_twilio.accepted[0].form["Twiml"]
    assert "&lt;応答&gt; &amp;" in document
    root = parse_twiml(document)
    assert [child.tag for child in root] == ["Say"]
    assert root[0].text == text


def test_twiml_is_cut_to_twilios_limit() -> None:
    document = twiml("<" * 5000)
    assert len(document) <= TWIML_MAX
    say = parse_twiml(document).find("Say")
    assert say is not None
    assert say.text is not None
    assert say.text.endswith("…")


async def test_call_429_gives_retry_after(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await phone_channel(channel_factory, fake_twilio)
    fake_twilio.answer_next("rate_limited", retry_after=3)
    result = await channel.send(message(address=Secret(DIRECT_LINE)))
    assert (result.ok, result.retry_after) == (False, 3.0)


async def test_call_to_invalid_number_is_permanent_without_the_number(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await phone_channel(channel_factory, fake_twilio)
    result = await channel.send(message(address=Secret("0311112222")))
    assert (result.ok, result.permanent) == (False, True)
    assert "0311112222" not in result.detail


async def test_call_5xx_is_retryable(
    fake_twilio: FakeTwilio, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await phone_channel(channel_factory, fake_twilio)
    fake_twilio.answer_next("server_error")
    result = await channel.send(message(address=Secret(DIRECT_LINE)))
    assert (result.ok, result.permanent) == (False, False)
