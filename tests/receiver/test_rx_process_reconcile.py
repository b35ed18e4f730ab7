"""The real process, SIGKILLed mid-batch towards the Slack Web API and Twilio SMS, restarted:
every message arrives exactly once, the in-flight ones found upstream instead of resent."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from rx_helpers import alert, payload
from rx_process import start_receiver, upstreams_config

from receiver.fakes._base import FakeServer
from receiver.fakes.slack import BOT_TOKEN, FakeSlack
from receiver.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

pytestmark = pytest.mark.integration

MEMBERS, GROUPS = 8, 3
# Each upstream accepts a message at once and answers this much later: a kill lands while
# messages are accepted but not yet acknowledged, the case that used to page twice.
ANSWER_DELAY = 0.05
ENV = {"RX_SLACK_TOKEN": BOT_TOKEN, "RX_TWILIO_SID": ACCOUNT_SID, "RX_TWILIO_TOKEN": AUTH_TOKEN}


async def until(condition: Callable[[], bool], fakes: list[FakeServer], seconds: float) -> None:
    """Wake on every message a fake accepts until ``condition`` holds (bounded by ``seconds``)."""
    async with asyncio.timeout(seconds):
        while True:
            for fake in fakes:
                fake.changed.clear()
            if condition():
                return
            waiters = [asyncio.create_task(fake.changed.wait()) for fake in fakes]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()


async def test_sigkill_mid_batch_then_restart_delivers_each_slack_and_sms_message_once(
    tmp_path: Path,
) -> None:
    per_channel = MEMBERS * GROUPS
    async with FakeSlack() as slack, FakeTwilio() as twilio:
        slack.answer_next("hang", times=10 * per_channel, seconds=ANSWER_DELAY)
        twilio.answer_next("hang", times=10 * per_channel, seconds=ANSWER_DELAY)

        def arrived() -> int:
            return len(slack.posted_by_delivery) + len(twilio.created_bodies)

        config = tmp_path / "receiver.yml"
        config.write_text(
            upstreams_config(
                store=f"sqlite: {{path: {tmp_path / 'rx.db'}}}",
                slack_api=slack.api_url,
                slack_channel="C0EMERGENCY",
                twilio_api=twilio.api_url,
                members=MEMBERS,
            )
        )
        first = await start_receiver(config, tmp_path / "first.log", ENV)
        try:
            async with aiohttp.ClientSession() as session:
                for group in range(GROUPS):
                    firing = alert(level="1", fingerprint=f"fp{group}")
                    assert await first.post(session, payload(firing, group_key=f"g{group}")) == 200
            await until(lambda: arrived() >= per_channel * 2 // 3, [slack, twilio], seconds=20)
            first.kill()
            await first.proc.wait()
        finally:
            await first.stop()
        at_kill = arrived()
        assert 0 < at_kill < 2 * per_channel  # really in the middle of the batch

        second = await start_receiver(config, tmp_path / "second.log", ENV)
        try:
            await until(lambda: arrived() >= 2 * per_channel, [slack, twilio], seconds=20)
            await asyncio.sleep(1.5)  # longer than the lease: anything resent would show now
        finally:
            await second.stop()

    assert len(slack.posted_by_delivery) == per_channel
    assert set(slack.posted_by_delivery.values()) == {1}
    assert len(twilio.created_bodies) == per_channel
    assert set(twilio.created_bodies.values()) == {1}
    log = (tmp_path / "second.log").read_text()
    # The messages accepted but unacknowledged at the kill were reconciled, not resent.
    assert "found upstream, marked delivered without resending" in log
