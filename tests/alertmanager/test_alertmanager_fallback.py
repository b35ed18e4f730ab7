"""A real Alertmanager sends the broken-paging-path alerts around the receiver: email and Slack.

VoiceDriveReceiverDown and VoiceDriveReceiverWebhooksFailing take that path.

The receiver is not running in these tests (its webhook points at a closed loopback port)
unless a test stands one in; the mail relay is a real aiosmtpd server on loopback and Slack an
HTTP recorder, both given to Alertmanager exactly where the repo's config names them.
"""

import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from am_harness import (
    TOKEN,
    AlertmanagerProcesses,
    RunningAlertmanager,
    alert,
    recording_http_server,
    repo_config,
    wait_until,
)

from voicedrive_common.throwaway_pg import free_port
from voicedrive_mixin.thresholds import load_thresholds

pytestmark = pytest.mark.integration

RECEIVER_DOWN = "VoiceDriveReceiverDown"
WEBHOOKS_FAILING = "VoiceDriveReceiverWebhooksFailing"
# Flushed at once, sent again only on a change: each test sees one message per change.
QUICK = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
SLACK_PATH = "/services/T0VOICE/B0DRIVE/fallback"
FIRING_SUBJECT = (
    "[VoiceDrive] 【代替経路】発生: voicedrive-receiver 経由の通知が止まっています（{count} 件）"
)
RESOLVED_SUBJECT = "[VoiceDrive] 【代替経路】解決: voicedrive-receiver 経由の通知が再開しました"


@dataclass(frozen=True)
class Mail:
    """One message the relay accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        """The decoded Subject header."""
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The decoded text/plain body."""
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        content = body.get_content()
        assert isinstance(content, str)
        return content


class _Relay:
    """aiosmtpd handler keeping every accepted message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.mails: list[Mail] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message, answer 250."""
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def received(self) -> list[Mail]:
        """A snapshot of the messages so far."""
        with self._lock:
            return list(self.mails)


@pytest.fixture
def relay() -> Iterator[_Relay]:
    """A real SMTP server on loopback (``relay.address``) keeping the mail it receives."""
    port = free_port()
    handler = _Relay(f"127.0.0.1:{port}")
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[AlertmanagerProcesses]:
    """Real Alertmanagers started by the test, all stopped afterwards."""
    with AlertmanagerProcesses(tmp_path) as processes:
        yield processes


@pytest.fixture
def am(alertmanagers: AlertmanagerProcesses, relay: _Relay) -> RunningAlertmanager:
    """An Alertmanager mailing through ``relay``; no receiver runs, Slack is down."""
    return alertmanagers.start(smarthost=relay.address, timers=QUICK)


def receiver_down(
    instance: str = "127.0.0.1:9918",
    *,
    ended: bool = False,
    started_ago: timedelta = timedelta(minutes=1),
) -> dict[str, Any]:
    """VoiceDriveReceiverDown for ``instance`` as Prometheus sends it, texts from the mixin."""
    rule = load_thresholds().alert(RECEIVER_DOWN)
    annotations = {
        "summary": rule.summary.ja,
        "summary_en": rule.summary.en,
        "description": f"ターゲット {instance} のメトリクスを取得できていません。",
        "description_en": f"Prometheus has not scraped target {instance}.",
        "runbook_url": "https://example.invalid/runbooks/receiver.md#voicedrivereceiverdown",
    }
    return alert(
        RECEIVER_DOWN,
        ended=ended,
        started_ago=started_ago,
        annotations=annotations,
        job="voicedrive-receiver",
        instance=instance,
    )


def webhooks_failing() -> dict[str, Any]:
    """VoiceDriveReceiverWebhooksFailing as Prometheus sends it, texts from the mixin."""
    rule = load_thresholds().alert(WEBHOOKS_FAILING)
    annotations = {
        "summary": rule.summary.ja,
        "summary_en": rule.summary.en,
        "description": "Alertmanager は voicedrive-receiver への通知 2 件を断念しました。",
        "description_en": "Alertmanager gave up 2 webhook notification(s).",
        "runbook_url": "https://example.invalid/runbooks/receiver.md#voicedrivereceiverwebhooksfailing",
    }
    return alert(WEBHOOKS_FAILING, annotations=annotations)


def first_mail(am: RunningAlertmanager, relay: _Relay, alerts: list[dict[str, Any]]) -> Mail:
    """Post ``alerts``; the one mail that arrives (bounded wait)."""
    am.post_alerts(alerts)
    assert wait_until(lambda: bool(relay.received()))
    (mail,) = relay.received()
    return mail


def fallback_mail_config() -> dict[str, Any]:
    """The fallback's email_configs entry as the repo's alertmanager.yml has it."""
    (fallback,) = [r for r in repo_config()["receivers"] if r["name"] == "voicedrive-fallback"]
    (mail,) = fallback["email_configs"]
    assert isinstance(mail, dict)
    return mail


def test_receiver_down_is_mailed_by_alertmanager_while_no_receiver_runs(
    am: RunningAlertmanager, relay: _Relay
) -> None:
    mail = first_mail(am, relay, [receiver_down()])
    configured = fallback_mail_config()
    assert mail.mail_from == configured["from"]
    assert mail.rcpt_tos == [configured["to"]]
    assert mail.subject == FIRING_SUBJECT.format(count=1)
    rule = load_thresholds().alert(RECEIVER_DOWN)
    assert f"- [発生] {rule.summary.ja}（127.0.0.1:9918）" in mail.text
    assert f"- [firing] {rule.summary.en} (127.0.0.1:9918)" in mail.text
    assert "ターゲット 127.0.0.1:9918 のメトリクスを取得できていません。" in mail.text
    runbook = "https://example.invalid/runbooks/receiver.md#voicedrivereceiverdown"
    assert f"手順書: {runbook}" in mail.text
    assert "/#/alerts" in mail.text


def test_every_receiver_down_at_once_is_one_mail_listing_each_instance(
    am: RunningAlertmanager, relay: _Relay
) -> None:
    # Just fired, as Prometheus sends them: the new group waits group_wait for both. (An alert
    # older than group_wait is flushed the moment its group is created, alone.)
    now = timedelta(0)
    both = [receiver_down(i, started_ago=now) for i in ("127.0.0.1:9918", "127.0.0.1:9919")]
    mail = first_mail(am, relay, both)
    assert mail.subject == FIRING_SUBJECT.format(count=2)
    assert "（127.0.0.1:9918）" in mail.text
    assert "（127.0.0.1:9919）" in mail.text


def test_the_fallback_mails_again_when_the_receiver_is_back(
    am: RunningAlertmanager, relay: _Relay
) -> None:
    first_mail(am, relay, [receiver_down()])
    am.post_alerts([receiver_down(ended=True)])
    assert wait_until(lambda: len(relay.received()) == 2)
    resolved = relay.received()[1]
    assert resolved.subject == RESOLVED_SUBJECT
    assert "- [解決] " in resolved.text


def test_receiver_down_is_posted_to_slack_from_the_url_file(
    alertmanagers: AlertmanagerProcesses,
) -> None:
    with recording_http_server() as (base, posts):
        am = alertmanagers.start(slack_url=base + SLACK_PATH, timers=QUICK)
        am.post_alerts([receiver_down()])
        assert wait_until(lambda: any(p["path"] == SLACK_PATH for p in posts))
    (post,) = [p for p in posts if p["path"] == SLACK_PATH]
    (attachment,) = post["body"]["attachments"]
    rule = load_thresholds().alert(RECEIVER_DOWN)
    assert attachment["title"] == (
        "[VoiceDrive] 【代替経路】発生: voicedrive-receiver 経由の通知が止まっています"
    )
    # The push notification's preview says the same, not Alertmanager's English default.
    assert attachment["fallback"] == attachment["title"]
    assert f"発生: {rule.summary.ja}（127.0.0.1:9918） / {rule.summary.en}" in attachment["text"]
    assert "receiver.md#voicedrivereceiverdown" in attachment["text"]


def test_receiver_down_also_reaches_a_surviving_receiver(
    alertmanagers: AlertmanagerProcesses, relay: _Relay
) -> None:
    # One replica of two is down: the other records and pages it, and the mail goes out too.
    with recording_http_server() as (base, hooks):
        am = alertmanagers.start(webhook_base=base, smarthost=relay.address, timers=QUICK)
        am.post_alerts([receiver_down("127.0.0.1:9919")])
        assert wait_until(lambda: any(h["path"] == "/webhook" for h in hooks))
        assert wait_until(lambda: bool(relay.received()))
    (hook,) = [h for h in hooks if h["path"] == "/webhook"]
    assert hook["auth"] == f"Bearer {TOKEN}"
    ((down,),) = [hook["body"]["alerts"]]
    assert down["labels"]["alertname"] == RECEIVER_DOWN
    assert down["labels"]["instance"] == "127.0.0.1:9919"
    assert down["status"] == "firing"


def test_no_other_alert_takes_the_fallback(
    alertmanagers: AlertmanagerProcesses, relay: _Relay
) -> None:
    with recording_http_server() as (base, hooks):
        am = alertmanagers.start(webhook_base=base, smarthost=relay.address, timers=QUICK)
        am.post_alerts([alert("VoiceDriveExporterDown"), alert("VoiceDriveAPIDown")])
        am.post_alerts([receiver_down()])

        def delivered(name: str) -> bool:
            return any(
                a["labels"]["alertname"] == name
                for h in hooks
                if h["path"] == "/webhook"
                for a in h["body"]["alerts"]
            )

        # The receiver got all three, so every group has been flushed once.
        others = ["VoiceDriveExporterDown", "VoiceDriveAPIDown"]
        assert wait_until(lambda: all(map(delivered, others)))
        assert wait_until(lambda: delivered(RECEIVER_DOWN) and bool(relay.received()))
    (mail,) = relay.received()
    assert "VoiceDriveExporterDown" not in mail.text
    assert mail.text.count("- [発生] ") == 1


def test_webhooks_failing_is_mailed_while_the_receiver_refuses_every_webhook(
    alertmanagers: AlertmanagerProcesses, relay: _Relay
) -> None:
    # The receiver runs but answers 503 (its store unavailable): the alert about it is tried
    # there too, and reaches the technical lead by Alertmanager's own mail.
    with recording_http_server(lambda count: 503) as (base, hooks):
        am = alertmanagers.start(webhook_base=base, smarthost=relay.address, timers=QUICK)
        mail = first_mail(am, relay, [webhooks_failing()])
        assert wait_until(lambda: any(h["path"] == "/webhook" for h in hooks))
    assert mail.subject == FIRING_SUBJECT.format(count=1)
    rule = load_thresholds().alert(WEBHOOKS_FAILING)
    # No instance label (one alert for the path): the line ends with the summary.
    lines = mail.text.splitlines()
    assert f"- [発生] {rule.summary.ja}" in lines
    assert f"- [firing] {rule.summary.en}" in lines
    runbook = "https://example.invalid/runbooks/receiver.md#voicedrivereceiverwebhooksfailing"
    assert f"手順書: {runbook}" in mail.text


def test_a_missing_slack_url_file_fails_the_slack_message_at_once_and_the_mail_goes_out(
    alertmanagers: AlertmanagerProcesses, relay: _Relay
) -> None:
    # Alertmanager 0.25 reads api_url_file at send time; a missing file is an unrecoverable
    # error: one attempt, no retry within the notification (the next group_interval tries
    # again, nothing having been recorded as sent). The mail is a separate integration.
    am = alertmanagers.start(smarthost=relay.address, slack_url=None, timers=QUICK)
    first_mail(am, relay, [receiver_down()])
    failed = "alertmanager_notifications_failed_total"
    assert wait_until(lambda: (am.metric(failed, integration="slack") or 0) >= 1)
    log = am.log.read_text()
    assert "slack[0]: notify retry canceled due to unrecoverable error after 1 attempts" in log
    assert "fallback-slack-webhook-url: no such file or directory" in log
    assert am.metric(failed, integration="email") == 0
