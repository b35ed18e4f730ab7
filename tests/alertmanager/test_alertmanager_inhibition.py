"""A real Alertmanager running alertmanager.yml inhibits what each rule explains, and no more."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from am_harness import (
    TOKEN,
    AlertmanagerProcesses,
    RunningAlertmanager,
    alert,
    recording_http_server,
    wait_until,
)

pytestmark = pytest.mark.integration

SYSTEM_DOWN_EXPLAINS = [
    "VoiceDriveAPIDown",
    "VoiceDriveAPIEndpointDown",
    "VoiceDriveAPISlow",
    "VoiceDriveDatabaseDown",
    "VoiceDriveNotificationSuccessLow",
    "VoiceDriveNotificationMassFailure",
]
NOT_EXPLAINED_BY_AN_OUTAGE = [
    "VoiceDriveExporterDown",
    "VoiceDriveReceiverDown",
    "VoiceDriveReceiverWebhooksFailing",
    "VoiceDriveProbeStale",
    "VoiceDriveBackupStale",
    "VoiceDriveTLSCertExpiring",
    "VoiceDriveHostCPUHigh",
    "VoiceDriveHostMemoryHigh",
]


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[AlertmanagerProcesses]:
    """Real Alertmanagers started by the test, all stopped afterwards."""
    with AlertmanagerProcesses(tmp_path) as processes:
        yield processes


@pytest.fixture
def am(alertmanagers: AlertmanagerProcesses) -> RunningAlertmanager:
    """One Alertmanager whose webhooks lead nowhere (these tests read only alert status)."""
    return alertmanagers.start()


def states_after(
    am: RunningAlertmanager, posted: list[dict[str, Any]], expected: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Post alerts, then wait (bounded) until Alertmanager reports the expected states."""
    am.post_alerts(posted)
    return am.wait_for_states(expected)


def test_system_down_suppresses_the_alerts_it_explains(am: RunningAlertmanager) -> None:
    expected = {"VoiceDriveSystemDown/voicedrive": "active"} | {
        f"{name}/voicedrive": "suppressed" for name in SYSTEM_DOWN_EXPLAINS
    }
    posted = [alert("VoiceDriveSystemDown")] + [alert(n) for n in SYSTEM_DOWN_EXPLAINS]
    states = states_after(am, posted, expected)
    assert {k: v["state"] for k, v in states.items()} == expected
    source = next(a for a in am.alerts() if a["labels"]["alertname"] == "VoiceDriveSystemDown")
    for name in SYSTEM_DOWN_EXPLAINS:
        assert states[f"{name}/voicedrive"]["inhibitedBy"] == [source["fingerprint"]]


def test_system_down_leaves_alerts_it_does_not_explain_active(am: RunningAlertmanager) -> None:
    names = [*NOT_EXPLAINED_BY_AN_OUTAGE, "Watchdog"]
    expected = {f"{name}/voicedrive": "active" for name in ["VoiceDriveSystemDown", *names]}
    # The inhibition must have been in effect: the explained alert is suppressed meanwhile.
    expected["VoiceDriveAPIDown/voicedrive"] = "suppressed"
    posted = [alert("VoiceDriveSystemDown"), alert("VoiceDriveAPIDown")]
    posted += [alert(n) for n in names]
    states = states_after(am, posted, expected)
    assert {k: v["state"] for k, v in states.items()} == expected


def test_system_down_of_one_system_does_not_silence_another(am: RunningAlertmanager) -> None:
    expected = {
        "VoiceDriveSystemDown/medical": "active",
        "VoiceDriveAPIDown/voicedrive": "active",
        "VoiceDriveAPIDown/medical": "suppressed",
    }
    posted = [
        alert("VoiceDriveSystemDown", system="medical"),
        alert("VoiceDriveAPIDown", system="medical"),
        alert("VoiceDriveAPIDown", system="voicedrive"),
    ]
    states = states_after(am, posted, expected)
    assert {k: v["state"] for k, v in states.items()} == expected


def test_api_down_suppresses_endpoint_down_and_slow_not_database_down(
    am: RunningAlertmanager,
) -> None:
    expected = {
        "VoiceDriveAPIDown/voicedrive": "active",
        "VoiceDriveAPIEndpointDown/voicedrive": "suppressed",
        "VoiceDriveAPISlow/voicedrive": "suppressed",
        "VoiceDriveDatabaseDown/voicedrive": "active",
    }
    posted = [
        alert("VoiceDriveAPIDown"),
        # The endpoint-level alerts carry labels the aggregate does not have.
        alert("VoiceDriveAPIEndpointDown", endpoint="/api/status", job="voicedrive-exporter"),
        alert("VoiceDriveAPISlow", endpoint="/health", job="voicedrive-exporter"),
        alert("VoiceDriveDatabaseDown"),
    ]
    states = states_after(am, posted, expected)
    assert {k: v["state"] for k, v in states.items()} == expected


def test_mass_failure_suppresses_success_low(am: RunningAlertmanager) -> None:
    expected = {
        "VoiceDriveNotificationMassFailure/voicedrive": "active",
        "VoiceDriveNotificationSuccessLow/voicedrive": "suppressed",
    }
    posted = [alert("VoiceDriveNotificationMassFailure"), alert("VoiceDriveNotificationSuccessLow")]
    states = states_after(am, posted, expected)
    assert {k: v["state"] for k, v in states.items()} == expected


@pytest.mark.parametrize("resource", ["CPU", "Memory"])
def test_critical_suppresses_its_high_twin_on_the_same_host(
    am: RunningAlertmanager, resource: str
) -> None:
    critical, high = f"VoiceDriveHost{resource}Critical", f"VoiceDriveHost{resource}High"
    expected = {
        f"{critical}/voicedrive/host-a": "active",
        f"{high}/voicedrive/host-a": "suppressed",
        f"{high}/voicedrive/host-b": "active",
    }
    posted = [
        alert(critical, instance="host-a"),
        alert(high, instance="host-a"),
        alert(high, instance="host-b"),
    ]
    states = states_after(am, posted, expected)
    assert {k: v["state"] for k, v in states.items()} == expected


@pytest.mark.parametrize(
    "blind",
    ["VoiceDriveExporterDown", "VoiceDriveReceiverDown", "VoiceDriveReceiverWebhooksFailing"],
)
def test_blind_monitoring_suppresses_nothing(am: RunningAlertmanager, blind: str) -> None:
    # Monitoring (the probes, or the paging path) being blind must be paged on top of whatever
    # else is still firing.
    names = [
        blind,
        "VoiceDriveAPISlow",
        "VoiceDriveAPIEndpointDown",
        "VoiceDriveDatabaseDown",
        "VoiceDriveNotificationSuccessLow",
        "VoiceDriveProbeStale",
        "VoiceDriveBackupStale",
        "VoiceDriveHostCPUHigh",
    ]
    am.post_alerts([alert(n) for n in names])
    # A barrier: the inhibitor handles alerts in order, so once a pair posted later shows its
    # inhibition, the blind alert has been taken into account too.
    barrier = {"VoiceDriveAPISlow/medical": "suppressed"}
    expected = {f"{name}/voicedrive": "active" for name in names} | barrier
    barrier_alerts = [alert("VoiceDriveAPIDown", system="medical")]
    barrier_alerts.append(alert("VoiceDriveAPISlow", system="medical"))
    states = states_after(am, barrier_alerts, expected)
    states.pop("VoiceDriveAPIDown/medical")
    assert {k: v["state"] for k, v in states.items()} == expected


def test_a_resolved_system_down_no_longer_suppresses(am: RunningAlertmanager) -> None:
    before = states_after(
        am,
        [alert("VoiceDriveSystemDown"), alert("VoiceDriveDatabaseDown")],
        {"VoiceDriveDatabaseDown/voicedrive": "suppressed"},
    )
    assert before["VoiceDriveDatabaseDown/voicedrive"]["state"] == "suppressed"
    expected = {"VoiceDriveDatabaseDown/voicedrive": "active"}
    states = states_after(am, [alert("VoiceDriveSystemDown", ended=True)], expected)
    assert states["VoiceDriveDatabaseDown/voicedrive"]["state"] == "active"


@pytest.fixture
def webhook_sink() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server standing in for the receiver: (base URL, recorded requests)."""
    with recording_http_server() as sink:
        yield sink


FAST = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1s"}


def firing_names(received: list[dict[str, Any]], path: str) -> set[str]:
    """Names of every firing alert delivered to ``path``."""
    return {
        a["labels"]["alertname"]
        for r in received
        if r["path"] == path
        for a in r["body"]["alerts"]
        if a["status"] == "firing"
    }


def test_level4_outage_is_paged_once_without_its_inhibited_symptoms(
    alertmanagers: AlertmanagerProcesses, webhook_sink: tuple[str, list[dict[str, Any]]]
) -> None:
    base, received = webhook_sink
    am = alertmanagers.start(webhook_base=base, timers=FAST)
    sentinel = "VoiceDriveBackupStale"
    am.post_alerts([alert("VoiceDriveSystemDown"), alert(sentinel)])
    # The composite arrives first, as its shorter `for` makes it. These alerts started a minute
    # ago, so each new group is flushed the moment it is created: posting the symptoms in the
    # same instant would race Alertmanager's inhibitor against its dispatcher.
    assert wait_until(lambda: "VoiceDriveSystemDown" in firing_names(received, "/webhook"))
    am.post_alerts([alert(n) for n in SYSTEM_DOWN_EXPLAINS])
    after = len(received)

    # The symptoms' new groups flush as they are created; once the sentinel has been sent
    # twice more (repeat_interval 1s), every group has been flushed with the symptoms in it.
    def sentinel_sent_twice() -> bool:
        later = list(received)[after:]
        return sum(sentinel in firing_names([r], "/webhook") for r in later) >= 2

    assert wait_until(sentinel_sent_twice)
    assert firing_names(received, "/webhook") == {"VoiceDriveSystemDown", sentinel}
    level4 = [r for r in received if "VoiceDriveSystemDown" in firing_names([r], "/webhook")]
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in received)
    assert level4[0]["body"]["version"] == "4"
    assert level4[0]["body"]["groupLabels"] == {"system": "voicedrive", "component": "api"}


def firing_pages(received: list[dict[str, Any]]) -> list[set[str]]:
    """Per paging notification (not the heartbeat), the names of its firing alerts."""
    return [firing_names([r], "/webhook") for r in list(received)]


# One evaluation ahead (the composite's `for` is shorter than its parts'), or in the same
# POST, the composite listed first (rule order within one evaluation).
LEVEL4_ARRIVALS = ["composite_first", "together"]


@pytest.mark.parametrize("arrival", LEVEL4_ARRIVALS)
def test_level4_outage_in_an_existing_group_pages_only_system_down(
    alertmanagers: AlertmanagerProcesses,
    webhook_sink: tuple[str, list[dict[str, Any]]],
    arrival: str,
) -> None:
    # The demo drill's failure: the group {system=voicedrive, component=api} already exists, so
    # a new alert in it is flushed at the next group_interval tick, not after a group_wait.
    # Only the composite being in Alertmanager first keeps the Level 3 parts from paging.
    base, received = webhook_sink
    am = alertmanagers.start(webhook_base=base, timers=FAST)
    now = timedelta(0)
    earlier = "VoiceDriveTLSCertExpiring"  # component api, firing for days, not inhibited
    am.post_alerts([alert(earlier, started_ago=now)])
    assert wait_until(lambda: any(earlier in page for page in firing_pages(received)))

    # A stand-in alert of the database group (no real alert class shares it): it proves that
    # the group DatabaseDown joins has been flushed too.
    db_sentinel = alert("DatabaseGroupSentinel", started_ago=now, component="database")
    composite = alert("VoiceDriveSystemDown", started_ago=now)
    parts = [
        alert("VoiceDriveAPIDown", started_ago=now),
        alert("VoiceDriveDatabaseDown", started_ago=now),
        db_sentinel,
    ]
    if arrival == "composite_first":
        am.post_alerts([composite])
        assert wait_until(
            lambda: any("VoiceDriveSystemDown" in page for page in firing_pages(received))
        )
        am.post_alerts(parts)
    else:
        am.post_alerts([composite, *parts])
    after_parts = len(received)

    # repeat_interval 1s: once both groups have been notified twice after the parts arrived,
    # each has been flushed with them in it.
    def both_groups_flushed_twice() -> bool:
        later = firing_pages(received[after_parts:])
        api = sum("VoiceDriveSystemDown" in page for page in later)
        database = sum("DatabaseGroupSentinel" in page for page in later)
        return api >= 2 and database >= 2

    assert wait_until(both_groups_flushed_twice)
    paged = set().union(*firing_pages(received))
    assert paged == {earlier, "VoiceDriveSystemDown", "DatabaseGroupSentinel"}
    level4 = [r for r in received if "VoiceDriveSystemDown" in firing_names([r], "/webhook")]
    assert level4[0]["body"]["groupLabels"] == {"system": "voicedrive", "component": "api"}


def test_resolving_the_outage_sends_a_resolved_notification(
    alertmanagers: AlertmanagerProcesses, webhook_sink: tuple[str, list[dict[str, Any]]]
) -> None:
    base, received = webhook_sink
    am = alertmanagers.start(webhook_base=base, timers=FAST)
    am.post_alerts([alert("VoiceDriveSystemDown")])
    assert wait_until(lambda: bool(firing_names(received, "/webhook")))
    am.post_alerts([alert("VoiceDriveSystemDown", ended=True)])
    assert wait_until(lambda: any(r["body"]["status"] == "resolved" for r in list(received)))


def test_watchdog_reaches_the_heartbeat_path_repeatedly(
    alertmanagers: AlertmanagerProcesses, webhook_sink: tuple[str, list[dict[str, Any]]]
) -> None:
    base, received = webhook_sink
    am = alertmanagers.start(webhook_base=base, timers=FAST)
    am.post_alerts([alert("Watchdog", system="voicedrive")])
    assert wait_until(lambda: sum(r["path"] == "/webhook/watchdog" for r in received) >= 2)
    assert all(r["path"] == "/webhook/watchdog" for r in received)
