"""Twilio SMS lookups of in-doubt messages: the account's Messages list."""

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from receiver.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from voicedrive_common.clock import FakeClock
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels.base import OutboundMessage, Reconciler
from voicedrive_receiver.channels.sms import LIST_MAX_PAGES, LIST_PAGE_SIZE

Factory = Callable[..., Any]
MessageFn = Callable[..., OutboundMessage]
HOTLINE = "+819012345678"
OTHER = "+819087654321"
SENDER = "+815012345678"
TEXT = "【VoiceDrive L3 重大】通知の配信に失敗 INC-20250901-0001"


@pytest.fixture
async def twilio(clock: FakeClock) -> AsyncIterator[FakeTwilio]:
    """A Twilio stand-in whose creation times follow the fake clock."""
    async with FakeTwilio(now=lambda: clock.now().timestamp()) as fake:
        yield fake


async def sms_channel(factory: Factory, fake: FakeTwilio, **extra: Any) -> Any:
    sender: dict[str, str] = {"from": SENDER} if "messaging_service_sid" not in extra else {}
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_url": fake.api_url,
        **sender,
        **extra,
    }
    return await factory("sms", config)


def to_hotline(message: MessageFn, text: str = TEXT) -> OutboundMessage:
    return message(text=text, address=Secret(HOTLINE))


def list_calls(fake: FakeTwilio) -> list[Any]:
    return [r for r in fake.lookups if r.method == "GET"]


async def test_a_sent_sms_is_found_with_its_sid(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    since = clock.now().timestamp()
    sent = await channel.send(to_hotline(message))
    found = await channel.find_delivered(to_hotline(message), since)
    assert found is not None
    assert found.ok
    assert found.upstream_id == sent.upstream_id


async def test_the_list_is_filtered_by_recipient_sender_and_sent_day(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    await channel.find_delivered(to_hotline(message), clock.now().timestamp())
    [call] = list_calls(twilio)
    assert not call.problem
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert call.query == {
        "To": HOTLINE,
        "From": SENDER,
        "DateSent>": "2025-09-01",
        "PageSize": str(LIST_PAGE_SIZE),
    }


async def test_another_body_to_the_same_number_is_not_this_message(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    since = clock.now().timestamp()
    await channel.send(to_hotline(message, text="【VoiceDrive L3 重大】別の障害"))
    assert await channel.find_delivered(to_hotline(message), since) is None


async def test_the_same_body_to_another_number_is_not_this_message(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    since = clock.now().timestamp()
    await channel.send(message(text=TEXT, address=Secret(OTHER)))
    assert await channel.find_delivered(to_hotline(message), since) is None


async def test_the_same_body_created_before_since_is_not_this_message(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    await channel.send(to_hotline(message))
    clock.advance(30)
    assert await channel.find_delivered(to_hotline(message), clock.now().timestamp()) is None


async def test_a_message_twilio_failed_to_deliver_does_not_count(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    now = clock.now().timestamp()
    twilio.add_message(to=HOTLINE, body=TEXT, created=now, from_=SENDER, status="undelivered")
    assert await channel.find_delivered(to_hotline(message), now - 1) is None


async def test_the_match_is_the_body_as_the_channel_sends_it_cut_to_its_segments(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio, max_segments=1)
    since = clock.now().timestamp()
    long_text = "障害" * 100  # cut to one UCS-2 segment with an ellipsis
    await channel.send(to_hotline(message, text=long_text))
    found = await channel.find_delivered(to_hotline(message, text=long_text), since)
    assert found is not None
    assert found.ok


async def test_the_lookup_follows_next_page_uri(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    start = clock.now().timestamp()
    twilio.add_message(to=HOTLINE, body=TEXT, created=start + 1, from_=SENDER)
    for n in range(LIST_PAGE_SIZE + 5):  # newer, so the target is on page two
        twilio.add_message(to=HOTLINE, body=f"other {n}", created=start + 2 + n, from_=SENDER)
    found = await channel.find_delivered(to_hotline(message), start)
    assert found is not None
    assert found.ok
    calls = list_calls(twilio)
    assert len(calls) == 2
    assert calls[1].query["To"] == HOTLINE  # the + survived the page URI
    assert not calls[1].problem


async def test_more_pages_than_the_bound_is_unknown_not_absent(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    start = clock.now().timestamp()
    for n in range(LIST_PAGE_SIZE * LIST_MAX_PAGES + 1):
        twilio.add_message(to=HOTLINE, body=f"other {n}", created=start + n / 100, from_=SENDER)
    found = await channel.find_delivered(to_hotline(message), start)
    assert found is not None
    assert not found.ok
    assert len(list_calls(twilio)) == LIST_MAX_PAGES


async def test_with_a_messaging_service_the_service_is_matched_instead_of_from(
    twilio: FakeTwilio, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await sms_channel(channel_factory, twilio, messaging_service_sid="MG" + "1" * 32)
    now = clock.now().timestamp()
    twilio.add_message(to=HOTLINE, body=TEXT, created=now, from_=SENDER)  # not via the service
    assert await channel.find_delivered(to_hotline(message), now - 1) is None
    twilio.add_message(
        to=HOTLINE, body=TEXT, created=now, from_=SENDER, messaging_service_sid="MG" + "1" * 32
    )
    found = await channel.find_delivered(to_hotline(message), now - 1)
    assert found is not None
    assert found.ok
    assert "From" not in list_calls(twilio)[0].query


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda f: f.answer_list_next("server_error"), "HTTP 500"),
        (lambda f: f.answer_list_next("rate_limited"), "HTTP 429"),
        (lambda f: setattr(f, "auth_token", "rotated"), "HTTP 401"),
    ],
)
async def test_a_failed_list_is_unknown_with_the_reason(
    twilio: FakeTwilio,
    channel_factory: Factory,
    message: MessageFn,
    setup: Callable[[FakeTwilio], Any],
    code: str,
) -> None:
    channel = await sms_channel(channel_factory, twilio)
    setup(twilio)
    found = await channel.find_delivered(to_hotline(message), 0.0)
    assert found is not None
    assert not found.ok
    assert code in found.detail
    assert HOTLINE not in found.detail


async def test_the_phone_channel_cannot_look_up(
    twilio: FakeTwilio, channel_factory: Factory
) -> None:
    phone = await channel_factory(
        "phone",
        {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from": SENDER,
            "api_url": twilio.api_url,
        },
    )
    assert not isinstance(phone, Reconciler)


async def test_the_fake_refuses_an_unknown_list_filter(twilio: FakeTwilio) -> None:
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}"}
    url = f"{twilio.api_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params={"DateSentAfter": "2025-09-01"}, headers=headers) as resp,
    ):
        assert resp.status == 400
