"""Slack channel against the local Slack stand-in: webhook and chat.postMessage."""

import logging
from collections.abc import Callable
from typing import Any

import pytest

from receiver.fakes.slack import BOT_TOKEN, FakeSlack
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.channels.base import OutboundMessage
from voicedrive_receiver.rendering import Renderer, build_context

Factory = Callable[..., Any]
MessageFn = Callable[..., OutboundMessage]


async def webhook_channel(factory: Factory, fake: FakeSlack) -> Any:
    return await factory("slack", {"webhook_url": fake.webhook_url})


async def api_channel(factory: Factory, fake: FakeSlack, **extra: Any) -> Any:
    return await factory("slack", {"token": BOT_TOKEN, "api_url": fake.api_url, **extra})


async def test_webhook_post_succeeds_with_text_and_blocks(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, fake_slack)
    result = await channel.send(message(text="*障害* 発生"))
    assert result.ok
    [request] = fake_slack.accepted
    assert request.json["text"] == "*障害* 発生"
    assert request.json["blocks"][0]["text"] == {"type": "mrkdwn", "text": "*障害* 発生"}


async def test_webhook_429_gives_retry_after_from_header(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, fake_slack)
    fake_slack.answer_next("rate_limited", retry_after=3)
    result = await channel.send(message())
    assert (result.ok, result.retry_after, result.permanent) == (False, 3.0, False)


async def test_webhook_5xx_is_retryable(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, fake_slack)
    fake_slack.answer_next("server_error", status=500)
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, False)
    assert "HTTP 500" in result.detail


@pytest.mark.parametrize(
    ("error", "status"),
    [("channel_not_found", 404), ("channel_is_archived", 410), ("invalid_token", 403)],
)
async def test_webhook_4xx_error_code_is_permanent(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn, error: str, status: int
) -> None:
    channel = await webhook_channel(channel_factory, fake_slack)
    fake_slack.answer_next("error", error=error)
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, True)
    assert result.detail == f"slack webhook: HTTP {status} error {error}"


async def test_webhook_200_with_error_body_is_failure(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await webhook_channel(channel_factory, fake_slack)
    fake_slack.answer_next("error_on_200", error="invalid_payload")
    result = await channel.send(message())
    assert not result.ok
    assert "invalid_payload" in result.detail


async def test_webhook_url_never_appears_in_detail_or_logs(
    fake_slack: FakeSlack,
    channel_factory: Factory,
    message: MessageFn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = await webhook_channel(channel_factory, fake_slack)
    fake_slack.answer_next("server_error")
    failed = await channel.send(message())
    await fake_slack.stop()
    refused = await channel.send(message())
    assert "connection failed" in refused.detail
    for text in (failed.detail, refused.detail, caplog.text):
        assert fake_slack.webhook_path not in text


async def test_api_post_sends_bearer_token_channel_and_returns_ts(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, fake_slack, channel="#phase2-emergency")
    result = await channel.send(message())
    assert result.ok
    assert result.upstream_id is not None
    assert result.upstream_id == fake_slack.history["C0EMERGENCY"][-1]["ts"]
    [request] = fake_slack.accepted
    assert request.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.json["channel"] == "#phase2-emergency"


async def test_api_recipient_address_overrides_configured_channel(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, fake_slack)
    await channel.send(message(address="#medical-ops"))
    assert fake_slack.accepted[0].json["channel"] == "#medical-ops"


async def test_api_ok_false_on_http_200_is_permanent_failure(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, fake_slack)
    fake_slack.answer_next("error_on_200", error="channel_not_found")
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, True)
    assert result.detail == "slack chat.postMessage: error channel_not_found"


async def test_api_internal_error_on_200_is_retryable(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, fake_slack)
    fake_slack.answer_next("error_on_200", error="internal_error")
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, False)


async def test_api_429_gives_retry_after_from_header(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, fake_slack)
    fake_slack.answer_next("rate_limited", retry_after=3)
    result = await channel.send(message())
    assert (result.ok, result.retry_after, result.permanent) == (False, 3.0, False)
    assert "ratelimited" in result.detail


async def test_api_5xx_is_retryable(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await api_channel(channel_factory, fake_slack)
    fake_slack.answer_next("server_error", status=503)
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, False)


async def test_api_wrong_token_is_permanent_and_token_not_in_detail(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    wrong = "xoxb-9999-wrong-token"
    channel = await channel_factory("slack", {"token": wrong, "api_url": fake_slack.api_url})
    result = await channel.send(message())
    assert (result.ok, result.permanent) == (False, True)
    assert result.detail == "slack chat.postMessage: error invalid_auth"
    assert wrong not in result.detail


async def test_large_group_is_summarised_within_block_limits(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "VoiceDriveNotificationFailed", "instance": f"n{i}"},
            "annotations": {"summary": f"通知失敗 {i}", "description": "x" * 400},
            "startsAt": "2025-09-01T00:00:00Z",
        }
        for i in range(120)
    ]
    ctx = build_context(status="firing", level=3, alerts=alerts)
    rendered = Renderer(registry=None).render("slack", "firing", "ja", ctx)
    channel = await webhook_channel(channel_factory, fake_slack)
    result = await channel.send(message(text=rendered.text, extra=rendered.extra))
    assert result.ok, fake_slack.requests[-1].problem
    body = fake_slack.accepted[0].json
    sections = [b["text"]["text"] for b in body["blocks"]]
    assert "…他 110 件" in "\n".join(sections)
    assert len(body["blocks"]) <= 50
    assert all(len(s) <= 3000 for s in sections)
    assert len(body["text"]) <= 3000


async def test_oversized_blocks_are_cut_to_slack_limits(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "あ" * 5000}}] * 80
    channel = await webhook_channel(channel_factory, fake_slack)
    result = await channel.send(message(text="い" * 50000, extra={"blocks": blocks}))
    assert result.ok, fake_slack.requests[-1].problem
    body = fake_slack.accepted[0].json
    assert len(body["blocks"]) == 50
    assert body["blocks"][-1]["text"]["text"] == "… (+31 blocks)"
    assert max(len(b["text"]["text"]) for b in body["blocks"]) == 3000
    assert body["text"].endswith("…")


def test_config_needs_exactly_one_of_webhook_url_and_token() -> None:
    from voicedrive_common.confload import Node
    from voicedrive_receiver.channels.slack import SlackType

    with pytest.raises(ConfigError, match=r"channels.s.webhook_url: set exactly one"):
        SlackType().parse(Node({"webhook_url": "http://x/y", "token": "xoxb-1"}, "channels.s"))
    with pytest.raises(ConfigError, match=r"channels.s.webhook_url: set exactly one"):
        SlackType().parse(Node({}, "channels.s"))


def test_config_unknown_key_is_named() -> None:
    from voicedrive_common.confload import Node
    from voicedrive_receiver.channels.slack import SlackType

    with pytest.raises(ConfigError, match=r"channels.s: unknown key 'chanel'"):
        SlackType().parse(Node({"token": "xoxb-1", "chanel": "#x"}, "channels.s"))


async def test_missing_secret_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from voicedrive_common.confload import Node
    from voicedrive_receiver.channels.slack import SlackType

    monkeypatch.delenv("VD_TEST_SLACK_URL", raising=False)
    settings = SlackType().parse(Node({"webhook_url": "${VD_TEST_SLACK_URL}"}, "channels.s"))
    with pytest.raises(ConfigError, match="environment variable VD_TEST_SLACK_URL is not set"):
        await SlackType().create(settings, name="s")


async def test_slow_upstream_times_out_as_retryable(
    fake_slack: FakeSlack, channel_factory: Factory, message: MessageFn
) -> None:
    channel = await channel_factory(
        "slack", {"token": BOT_TOKEN, "api_url": fake_slack.api_url, "timeout": "200ms"}
    )
    fake_slack.answer_next("hang", seconds=1.0)
    result = await channel.send(message())
    assert (result.ok, result.permanent, result.detail) == (
        False,
        False,
        "slack chat.postMessage: timed out",
    )
