"""What a real Alertmanager 0.25 counts when the receiver refuses its webhooks.

VoiceDriveReceiverWebhooksFailing reads `alertmanager_notifications_failed_total{integration=
"webhook"}`; these tests pin that the series exists with exactly that label, that it counts a
notification given up after its retries, and that a refusal followed by an accepted retry
counts nothing there. The receiver is a local HTTP server answering the status a test chooses.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from am_harness import AlertmanagerProcesses, alert, recording_http_server, wait_until

pytestmark = pytest.mark.integration

FAILED = "alertmanager_notifications_failed_total"
TOTAL = "alertmanager_notifications_total"
ATTEMPTS_FAILED = "alertmanager_notification_requests_failed_total"
# group_interval 1s: each notification retries until Alertmanager's minimum timeout (10 s in
# 0.25), so a refused one is given up about 10 s after its first attempt.
QUICK = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
GIVE_UP_TIMEOUT_S = 30.0


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[AlertmanagerProcesses]:
    """Real Alertmanagers started by the test, all stopped afterwards."""
    with AlertmanagerProcesses(tmp_path) as processes:
        yield processes


def refuse_all(count: int) -> int:
    """503 to every webhook, as a receiver whose store is unavailable answers."""
    return 503


def refuse_first(count: int) -> int:
    """503 to the first webhook only, then 200: a blip."""
    return 503 if count == 1 else 200


def unauthorized(count: int) -> int:
    """401 to every webhook, as after a token rotated on one side only."""
    return 401


def test_a_receiver_answering_503_counts_a_failed_webhook_notification_after_retries(
    alertmanagers: AlertmanagerProcesses,
) -> None:
    with recording_http_server(refuse_all) as (base, hooks):
        am = alertmanagers.start(webhook_base=base, timers=QUICK)
        assert am.metric(FAILED, integration="webhook") == 0
        am.post_alerts([alert("VoiceDriveAPIDown")])
        assert wait_until(
            lambda: (am.metric(FAILED, integration="webhook") or 0) >= 1,
            timeout_s=GIVE_UP_TIMEOUT_S,
        )
        # One notification, several attempts: Alertmanager retried before it gave up.
        attempts = am.metric(ATTEMPTS_FAILED, integration="webhook") or 0
        assert attempts > (am.metric(FAILED, integration="webhook") or 0)
    assert len(hooks) >= 2
    assert "notify retry canceled after" in am.log.read_text()


def test_the_heartbeat_and_the_paging_webhook_count_in_one_series(
    alertmanagers: AlertmanagerProcesses,
) -> None:
    # 0.25 labels these counters by integration only: the Watchdog's webhook and the paging
    # one, both the receiver, add to the same `integration="webhook"` series.
    with recording_http_server(refuse_all) as (base, hooks):
        am = alertmanagers.start(webhook_base=base, timers=QUICK)
        am.post_alerts([alert("Watchdog"), alert("VoiceDriveAPIDown")])
        assert wait_until(
            lambda: (am.metric(FAILED, integration="webhook") or 0) >= 2,
            timeout_s=GIVE_UP_TIMEOUT_S,
        )
    assert {h["path"] for h in hooks} == {"/webhook", "/webhook/watchdog"}


def test_a_webhook_refused_once_then_accepted_counts_no_failed_notification(
    alertmanagers: AlertmanagerProcesses,
) -> None:
    with recording_http_server(refuse_first) as (base, hooks):
        am = alertmanagers.start(webhook_base=base, timers=QUICK)
        am.post_alerts([alert("VoiceDriveAPIDown")])
        assert wait_until(lambda: (am.metric(TOTAL, integration="webhook") or 0) >= 1)
        assert wait_until(lambda: len(hooks) >= 2)
        assert wait_until(lambda: am.metric(ATTEMPTS_FAILED, integration="webhook") == 1)
        assert am.metric(FAILED, integration="webhook") == 0


def test_a_receiver_answering_401_counts_a_failed_notification_without_retrying(
    alertmanagers: AlertmanagerProcesses,
) -> None:
    with recording_http_server(unauthorized) as (base, _):
        am = alertmanagers.start(webhook_base=base, timers=QUICK)
        am.post_alerts([alert("VoiceDriveAPIDown")])
        # Given up at the first attempt, well before the 10 s a 503 is retried for.
        assert wait_until(lambda: (am.metric(FAILED, integration="webhook") or 0) >= 1, timeout_s=5)
    assert "unrecoverable error after 1 attempts" in am.log.read_text()
