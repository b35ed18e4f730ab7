"""End to end, one Alertmanager and one receiver: each level's fault pages exactly its channels.

Real PostgreSQL, simulator, exporter, Prometheus (the repo's rules with shortened `for`) and
Alertmanager (the repo's routes and inhibitions with shortened timers), the receiver paging the
fake Slack and Twilio and a real SMTP server. The tests run in order on one stack.
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
    empty_panels,
    fire,
    recover,
    run_fixture,
    staggered_recovery,
)
from e2e_stack import E2EStack, stack_fixture

pytestmark = pytest.mark.integration


# One Alertmanager and one receiver; `run` carries results from test to test.
stack = stack_fixture(peers=1, variant="single")
run = run_fixture()


def test_level2_slow_api_pages_slack_and_email_but_no_sms_or_phone(
    stack: E2EStack, run: Run
) -> None:
    assert_pages_of(fire(stack, run, 2))
    assert_alive(stack)


def test_level2_recovery_sends_resolved_to_slack_and_email(stack: E2EStack, run: Run) -> None:
    assert_resolved_pages(2, recover(stack, run, 2))


def test_level2_incident_closes_after_its_watch(stack: E2EStack, run: Run) -> None:
    assert_incident_closed_after_watch(stack, 2)


def test_level3_database_down_pages_slack_email_and_sms_but_no_phone(
    stack: E2EStack, run: Run
) -> None:
    assert_pages_of(fire(stack, run, 3))
    assert_alive(stack)


def test_level3_recovery_sends_resolved_to_slack_email_and_sms(stack: E2EStack, run: Run) -> None:
    assert_resolved_pages(3, recover(stack, run, 3))


def test_level3_incident_closes_after_its_watch(stack: E2EStack, run: Run) -> None:
    assert_incident_closed_after_watch(stack, 3)


def test_level4_api_and_database_down_pages_every_channel_once(stack: E2EStack, run: Run) -> None:
    assert_pages_of(fire(stack, run, 4))
    assert_alive(stack)


def test_level4_does_not_page_the_inhibited_level3_alerts(stack: E2EStack, run: Run) -> None:
    assert 4 in run.fired, "the Level 4 fault did not run"
    assert_inhibited_not_paged(run.fired[4])


def test_level4_recovery_sends_resolved_everywhere_but_the_phone(stack: E2EStack, run: Run) -> None:
    assert_resolved_pages(4, recover(stack, run, 4))


def test_level4_recovery_pages_none_of_the_inhibited_parts(stack: E2EStack, run: Run) -> None:
    assert 4 in run.after_recovery, "the Level 4 recovery did not run"
    assert_no_firing_page(run.after_recovery[4])


def test_level4_incident_closes_after_its_watch(stack: E2EStack, run: Run) -> None:
    assert_incident_closed_after_watch(stack, 4)


def test_level4_recovery_with_the_database_back_last_pages_no_level3(
    stack: E2EStack, run: Run
) -> None:
    assert_no_firing_page(staggered_recovery(stack, Run()))


def test_every_dashboard_panel_shows_series_from_the_running_stack(stack: E2EStack) -> None:
    assert empty_panels(stack) == []
