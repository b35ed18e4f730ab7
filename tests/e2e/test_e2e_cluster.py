"""End to end with two Alertmanager peers in one cluster and two receivers on one PostgreSQL.

Prometheus sends every alert to both peers; each peer notifies its own receiver; both
receivers share one store and run their outbox workers on it. Every level still pages exactly
once per channel.
"""

import pytest
from e2e_levels import (
    Run,
    assert_alive,
    assert_incident_closed_after_watch,
    assert_inhibited_not_paged,
    assert_no_firing_page,
    assert_pages_of,
    assert_resolved_pages,
    fire,
    recover,
    run_fixture,
)
from e2e_stack import E2EStack, http, stack_fixture, wait_for

pytestmark = pytest.mark.integration


# Two clustered Alertmanagers and two receivers; `run` carries results from test to test.
stack = stack_fixture(peers=2, variant="cluster")
run = run_fixture()


def _peers(url: str) -> int:
    status, body = http(f"{url}/api/v2/status")
    if status != 200 or not isinstance(body, dict):
        return 0
    cluster = body.get("cluster") or {}
    return len(cluster.get("peers") or []) if cluster.get("status") == "ready" else 0


def test_the_two_alertmanagers_form_one_ready_cluster(stack: E2EStack) -> None:
    def both_ready() -> bool:
        return all(_peers(url) == 2 for url in stack.alertmanager_urls)

    wait_for("each Alertmanager to see both peers, ready", both_ready, 30)


def test_prometheus_sends_to_both_alertmanagers(stack: E2EStack) -> None:
    def active() -> list[str] | None:
        status, body = http(f"{stack.prometheus_url}/api/v1/alertmanagers")
        urls = [a["url"] for a in body["data"]["activeAlertmanagers"]] if status == 200 else []
        return urls if len(urls) == 2 else None

    urls = wait_for("two active Alertmanagers in Prometheus", active, 30)
    assert sorted(u.split("/api/")[0] for u in urls) == sorted(stack.alertmanager_urls)


def test_level2_pages_once_per_channel_across_the_cluster(stack: E2EStack, run: Run) -> None:
    assert_pages_of(fire(stack, run, 2))
    assert_alive(stack)


def test_level2_recovery_sends_one_resolved_per_channel(stack: E2EStack, run: Run) -> None:
    assert_resolved_pages(2, recover(stack, run, 2))


def test_level2_incident_closes_after_its_watch(stack: E2EStack, run: Run) -> None:
    assert_incident_closed_after_watch(stack, 2)


def test_level3_pages_once_per_channel_across_the_cluster(stack: E2EStack, run: Run) -> None:
    assert_pages_of(fire(stack, run, 3))
    assert_alive(stack)


def test_level3_recovery_sends_one_resolved_per_channel(stack: E2EStack, run: Run) -> None:
    assert_resolved_pages(3, recover(stack, run, 3))


def test_level4_pages_once_per_channel_across_the_cluster(stack: E2EStack, run: Run) -> None:
    assert_pages_of(fire(stack, run, 4))
    assert_alive(stack)


def test_level4_does_not_page_the_inhibited_level3_alerts(stack: E2EStack, run: Run) -> None:
    assert 4 in run.fired, "the Level 4 fault did not run"
    assert_inhibited_not_paged(run.fired[4])


def test_level4_recovery_sends_one_resolved_per_channel(stack: E2EStack, run: Run) -> None:
    assert_resolved_pages(4, recover(stack, run, 4))


def test_level4_recovery_pages_none_of_the_inhibited_parts(stack: E2EStack, run: Run) -> None:
    assert 4 in run.after_recovery, "the Level 4 recovery did not run"
    assert_no_firing_page(run.after_recovery[4])


def test_both_receivers_show_the_same_incidents(stack: E2EStack) -> None:
    # Statuses move on (monitoring -> closed) between two reads; identities and levels do not.
    first = sorted((i["id"], i["level"], i["component"]) for i in stack.incidents(0))
    assert len(first) >= 3
    assert sorted((i["id"], i["level"], i["component"]) for i in stack.incidents(1)) == first
