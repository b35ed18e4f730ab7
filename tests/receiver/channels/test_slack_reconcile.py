"""Slack Web API lookups of in-doubt posts: message metadata and conversations.history."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from receiver.fakes.slack import BOT_TOKEN, FakeSlack
from voicedrive_common.clock import FakeClock
from voicedrive_receiver.channels.base import OutboundMessage, Reconciler
from voicedrive_receiver.channels.slack import (
    HISTORY_MAX_PAGES,
    HISTORY_PAGE_LIMIT,
    METADATA_EVENT_TYPE,
)

Factory = Callable[..., Any]
MessageFn = Callable[..., OutboundMessage]
CHANNEL_ID = "C0EMERGENCY"


@pytest.fixture
async def slack(clock: FakeClock) -> AsyncIterator[FakeSlack]:
    """A Slack stand-in whose message timestamps follow the fake clock."""
    async with FakeSlack(now=lambda: clock.now().timestamp()) as fake:
        yield fake


async def api_channel(factory: Factory, fake: FakeSlack, channel: str = CHANNEL_ID) -> Any:
    return await factory("slack", {"token": BOT_TOKEN, "api_url": fake.api_url, "channel": channel})


def history_calls(fake: FakeSlack) -> list[Any]:
    return [r for r in fake.lookups if r.path == "/api/conversations.history"]


def mark(delivery: str) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT_TYPE, "event_payload": {"delivery_id": delivery}}


async def test_a_post_carries_the_delivery_id_as_message_metadata(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, slack)
    assert (await channel.send(message(delivery_id="d-42"))).ok
    [post] = slack.accepted
    assert post.json["metadata"] == mark("d-42")


async def test_a_posted_message_is_found_by_its_delivery_id_with_its_ts(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await api_channel(channel_factory, slack)
    since = clock.now().timestamp()
    sent = await channel.send(message(delivery_id="d-1"))
    found = await channel.find_delivered(message(delivery_id="d-1"), since)
    assert found is not None
    assert found.ok
    assert found.upstream_id == sent.upstream_id


async def test_the_lookup_asks_for_metadata_from_since_with_the_token(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, slack)
    await channel.find_delivered(message(), 1756684800.25)
    [call] = history_calls(slack)
    assert call.method == "GET"
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert not call.problem
    query = call.query
    assert query["channel"] == CHANNEL_ID
    assert query["oldest"] == "1756684800.250000"
    assert query["include_all_metadata"] == "true"
    assert query["inclusive"] == "true"


async def test_another_delivery_in_the_channel_is_not_taken_for_this_one(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await api_channel(channel_factory, slack)
    since = clock.now().timestamp()
    await channel.send(message(delivery_id="d-other"))
    slack.add_message(CHANNEL_ID, ts=since + 1, text="same text", metadata=None)
    assert await channel.find_delivered(message(delivery_id="d-1"), since) is None


async def test_a_post_before_since_is_not_found(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await api_channel(channel_factory, slack)
    slack.add_message(CHANNEL_ID, ts=clock.now().timestamp() - 10, metadata=mark("d-1"))
    assert await channel.find_delivered(message(delivery_id="d-1"), clock.now().timestamp()) is None


async def test_the_lookup_follows_the_cursor_to_a_later_page(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await api_channel(channel_factory, slack)
    start = clock.now().timestamp()
    slack.add_message(CHANNEL_ID, ts=start + 1, metadata=mark("d-1"))
    for n in range(HISTORY_PAGE_LIMIT + 10):  # newer: the target is on page two
        slack.add_message(CHANNEL_ID, ts=start + 2 + n / 1000, metadata=mark(f"d-x{n}"))
    found = await channel.find_delivered(message(delivery_id="d-1"), start)
    assert found is not None
    assert found.ok
    calls = history_calls(slack)
    assert len(calls) == 2
    assert "cursor" in calls[1].query


async def test_more_pages_than_the_bound_is_unknown_not_absent(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await api_channel(channel_factory, slack)
    start = clock.now().timestamp()
    for n in range(HISTORY_PAGE_LIMIT * HISTORY_MAX_PAGES + 1):
        slack.add_message(CHANNEL_ID, ts=start + 1 + n / 10000, metadata=mark(f"d-x{n}"))
    found = await channel.find_delivered(message(delivery_id="d-1"), start)
    assert found is not None
    assert not found.ok
    assert len(history_calls(slack)) == HISTORY_MAX_PAGES


async def test_a_channel_name_is_looked_up_by_the_id_an_earlier_post_answered(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn, clock: FakeClock
) -> None:
    channel = await api_channel(channel_factory, slack, channel="#phase2-emergency")
    since = clock.now().timestamp()
    await channel.send(message(delivery_id="d-1"))
    found = await channel.find_delivered(message(delivery_id="d-1"), since)
    assert found is not None
    assert found.ok
    assert history_calls(slack)[0].query["channel"] == CHANNEL_ID


async def test_a_channel_name_never_posted_to_cannot_be_looked_up(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, slack, channel="#phase2-emergency")
    found = await channel.find_delivered(message(), 0.0)
    assert found is not None
    assert not found.ok
    assert history_calls(slack) == []


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda f: setattr(f, "scopes", ("chat:write",)), "missing_scope"),
        (lambda f: f.left.add(CHANNEL_ID), "not_in_channel"),
        (lambda f: f.answer_history_next("rate_limited"), "HTTP 429"),
        (lambda f: f.answer_history_next("server_error"), "HTTP 503"),
        (lambda f: f.answer_history_next("error", error="internal_error"), "internal_error"),
    ],
)
async def test_a_failed_lookup_is_unknown_with_the_reason(
    slack: FakeSlack,
    channel_factory: Factory,
    message: MessageFn,
    setup: Callable[[FakeSlack], Any],
    code: str,
) -> None:
    channel = await api_channel(channel_factory, slack)
    setup(slack)
    found = await channel.find_delivered(message(), 0.0)
    assert found is not None
    assert not found.ok
    assert code in found.detail


async def test_an_unknown_conversation_id_is_unknown(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, slack, channel="C0NOSUCHONE")
    slack.channels.pop("C0NOSUCHONE", None)
    found = await channel.find_delivered(message(), 0.0)
    assert found is not None
    assert "channel_not_found" in found.detail


async def test_an_incoming_webhook_channel_cannot_look_up(
    slack: FakeSlack, channel_factory: Factory
) -> None:
    channel = await channel_factory("slack", {"webhook_url": slack.webhook_url})
    assert not isinstance(channel, Reconciler)


async def test_the_api_channel_can_look_up(slack: FakeSlack, channel_factory: Factory) -> None:
    assert isinstance(await api_channel(channel_factory, slack), Reconciler)


async def test_the_fake_refuses_history_without_a_token_and_a_name_for_an_id(
    slack: FakeSlack,
) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{slack.api_url}/conversations.history"
        async with session.get(url, params={"channel": CHANNEL_ID}) as resp:
            no_token = await resp.json()
        headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
        async with session.get(url, params={"channel": "#phase2-emergency"}, headers=headers) as r:
            by_name = await r.json()
    assert no_token == {"ok": False, "error": "not_authed"}
    assert by_name == {"ok": False, "error": "channel_not_found"}


async def test_a_post_answered_too_late_after_slack_accepted_it_is_in_doubt(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await channel_factory(
        "slack",
        {"token": BOT_TOKEN, "api_url": slack.api_url, "channel": CHANNEL_ID, "timeout": "100ms"},
    )
    slack.answer_next("hang", seconds=0.5)
    result = await channel.send(message(delivery_id="d-1"))
    assert not result.ok
    assert result.in_doubt
    assert slack.posted_by_delivery["d-1"] == 1  # it did arrive


async def test_a_refused_connection_is_not_in_doubt(
    slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, slack)
    await slack.stop()
    result = await channel.send(message())
    assert not result.ok
    assert not result.in_doubt
