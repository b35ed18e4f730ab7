"""Lifecycle, escalation steps and SLA (P2, P8) with explicit instants."""

from datetime import datetime, timedelta

import pytest

from voicedrive_common.clock import FakeClock
from voicedrive_common.confload import parse_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.lifecycle.escalation import (
    Close,
    Escalate,
    EscalationPolicy,
    Repage,
    State,
    Stop,
    TransitionError,
    Wait,
    acknowledge,
    apply_step,
    evaluate_sla,
    next_step,
    on_firing,
    open_incident,
    parse_escalation_policy,
    resolve,
    run_due,
)
from voicedrive_receiver.lifecycle.tokyo import TOKYO

POLICY = EscalationPolicy(top_widen=(("management",), ("all_hands",)))
T0 = datetime(2025, 9, 2, 10, 0, tzinfo=TOKYO)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def test_unacknowledged_incident_escalates_at_exactly_30_minutes() -> None:
    lc = open_incident(T0, 2)
    assert next_step(lc, POLICY, at(30)) == Escalate(2, 3, at(30))


def test_unacknowledged_incident_does_not_escalate_at_29_59() -> None:
    lc = open_incident(T0, 2)
    assert next_step(lc, POLICY, at(29, 59)) == Wait(at(30), "escalate:2->3")


def test_escalation_driven_by_a_fake_clock_happens_once_at_30_minutes() -> None:
    clock = FakeClock(T0)
    lc = open_incident(clock.now(), 2)
    clock.advance(29 * 60 + 59)
    lc, done = run_due(lc, POLICY, clock.now())
    assert done == []
    clock.advance(1)
    lc, done = run_due(lc, POLICY, clock.now())
    assert done == [Escalate(2, 3, at(30))]
    assert lc.level == 3
    lc, done = run_due(lc, POLICY, clock.now())
    assert done == []


def test_acknowledgement_before_30_minutes_prevents_escalation() -> None:
    lc = acknowledge(open_incident(T0, 2), at(29, 59), "yamada")
    assert next_step(lc, POLICY, at(30)) == Stop("acknowledged by yamada")
    assert lc.state is State.ACKNOWLEDGED
    assert lc.acknowledged_by == "yamada"


def test_escalated_level_has_its_own_30_minute_wait() -> None:
    lc = apply_step(open_incident(T0, 2), Escalate(2, 3, at(30)))
    assert next_step(lc, POLICY, at(59, 59)) == Wait(at(60), "escalate:3->4")
    assert next_step(lc, POLICY, at(60)) == Escalate(3, 4, at(60))


def test_repeats_of_the_alert_do_not_reset_the_escalation_clock() -> None:
    lc = open_incident(T0, 2)
    outcome = on_firing(lc, at(20), 2, POLICY)
    assert outcome.kind == "repeat"
    assert next_step(outcome.lifecycle, POLICY, at(30)) == Escalate(2, 3, at(30))


def test_escalated_incident_keeps_its_level_when_the_original_alert_repeats() -> None:
    lc = apply_step(open_incident(T0, 2), Escalate(2, 3, at(30)))
    outcome = on_firing(lc, at(35), 2, POLICY)
    assert outcome.kind == "repeat"
    assert outcome.lifecycle.level == 3


def test_a_higher_alert_raises_the_level_and_starts_its_wait() -> None:
    outcome = on_firing(open_incident(T0, 2), at(10), 3, POLICY)
    assert outcome.kind == "raised"
    assert outcome.lifecycle.level == 3
    assert next_step(outcome.lifecycle, POLICY, at(40)) == Escalate(3, 4, at(40))


def test_level_4_repages_with_a_widening_audience() -> None:
    lc = open_incident(T0, 4)
    first = next_step(lc, POLICY, at(30))
    assert first == Repage(4, 1, at(30), ("management",))
    assert isinstance(first, Repage)
    lc = apply_step(lc, first)
    assert lc.level == 4
    second = next_step(lc, POLICY, at(60))
    assert second == Repage(4, 2, at(60), ("management", "all_hands"))
    assert isinstance(second, Repage)
    third = next_step(apply_step(lc, second), POLICY, at(90))
    assert isinstance(third, Repage)
    assert third.audience == ("management", "all_hands")


def test_catching_up_after_downtime_applies_every_due_step_in_order() -> None:
    lc, done = run_due(open_incident(T0, 2), POLICY, at(65))
    assert done == [Escalate(2, 3, at(30)), Escalate(3, 4, at(60))]
    assert [(c.from_level, c.to_level, c.at) for c in lc.history[1:]] == [
        (2, 3, at(30)),
        (3, 4, at(60)),
    ]


def test_a_stale_duplicate_step_changes_nothing() -> None:
    step = Escalate(2, 3, at(30))
    once = apply_step(open_incident(T0, 2), step)
    assert apply_step(once, step) == once


def test_step_keys_are_unique_per_transition() -> None:
    assert Escalate(2, 3, at(30)).key == "escalate:2->3"
    assert Repage(4, 2, at(60), ()).key == "repage:2"
    assert Close(at(60), 0).key == "close:0"


def test_resolved_incident_is_monitored_for_30_minutes_then_closed() -> None:
    lc = resolve(open_incident(T0, 2), at(10))
    assert lc.state is State.MONITORING
    assert next_step(lc, POLICY, at(39, 59)) == Wait(at(40), "close")
    step = next_step(lc, POLICY, at(40))
    assert step == Close(at(40), 0)
    assert isinstance(step, Close)
    assert apply_step(lc, step).state is State.CLOSED


def test_refire_29_minutes_into_monitoring_reopens_the_same_incident() -> None:
    lc = resolve(open_incident(T0, 2), at(10))
    outcome = on_firing(lc, at(39), 2, POLICY)
    assert outcome.kind == "reopened"
    assert outcome.lifecycle.state is State.OPEN
    assert outcome.lifecycle.opened_at == T0
    assert outcome.lifecycle.resolved_at is None


def test_refire_31_minutes_after_resolution_is_a_new_incident() -> None:
    lc = resolve(open_incident(T0, 2), at(10))
    assert on_firing(lc, at(41), 2, POLICY).kind == "new"


def test_refire_at_exactly_30_minutes_after_resolution_is_a_new_incident() -> None:
    lc = resolve(open_incident(T0, 2), at(10))
    assert on_firing(lc, at(40), 2, POLICY).kind == "new"


def test_reopened_acknowledged_incident_stays_acknowledged() -> None:
    lc = resolve(acknowledge(open_incident(T0, 2), at(5), "sato"), at(10))
    outcome = on_firing(lc, at(20), 2, POLICY)
    assert outcome.lifecycle.state is State.ACKNOWLEDGED
    assert outcome.lifecycle.acknowledged_by == "sato"


def test_a_close_planned_before_a_reopen_is_dropped() -> None:
    lc = resolve(open_incident(T0, 2), at(10))
    planned = Close(at(40), lc.reopened)
    reopened = on_firing(lc, at(20), 2, POLICY).lifecycle
    again = resolve(reopened, at(25))
    assert apply_step(again, planned).state is State.MONITORING


def test_second_acknowledgement_keeps_the_first_responder() -> None:
    lc = acknowledge(acknowledge(open_incident(T0, 1), at(3), "sato"), at(4), "suzuki")
    assert (lc.acknowledged_by, lc.acknowledged_at) == ("sato", at(3))


def test_acknowledging_a_closed_incident_is_refused() -> None:
    lc = apply_step(resolve(open_incident(T0, 1), at(1)), Close(at(31), 0))
    with pytest.raises(TransitionError, match="closed"):
        acknowledge(lc, at(40), "sato")


def test_acknowledgement_needs_a_name() -> None:
    with pytest.raises(TransitionError, match="name"):
        acknowledge(open_incident(T0, 1), at(1), "  ")


def test_first_response_at_14_59_is_met() -> None:
    lc = acknowledge(open_incident(T0, 2), at(14, 59), "sato")
    sla = evaluate_sla(lc, POLICY, at(20))
    assert sla.first_response == "met"
    assert sla.time_to_acknowledge == timedelta(minutes=14, seconds=59)


def test_first_response_at_15_00_is_breached() -> None:
    lc = acknowledge(open_incident(T0, 2), at(15), "sato")
    assert evaluate_sla(lc, POLICY, at(20)).breaches == ("first_response",)


def test_unacknowledged_incident_is_pending_then_breached() -> None:
    lc = open_incident(T0, 1)
    assert evaluate_sla(lc, POLICY, at(14, 59)).first_response == "pending"
    assert evaluate_sla(lc, POLICY, at(15)).first_response == "breached"


def test_level_2_resolved_within_2_hours_meets_its_deadline() -> None:
    lc = resolve(acknowledge(open_incident(T0, 2), at(5), "sato"), at(119, 59))
    sla = evaluate_sla(lc, POLICY, at(200))
    assert sla.response == "met"
    assert sla.time_to_resolve == timedelta(minutes=119, seconds=59)


def test_escalation_brings_the_higher_levels_stricter_deadline() -> None:
    # Level 2 (2 h) escalated to 3 at 30 min: the 1 h deadline from then ends at 90 min.
    lc = apply_step(open_incident(T0, 2), Escalate(2, 3, at(30)))
    assert evaluate_sla(lc, POLICY, at(0)).response_due == at(90)
    late = resolve(lc, at(95))
    assert evaluate_sla(late, POLICY, at(95)).response == "breached"


def test_policy_config_reads_per_level_settings() -> None:
    policy = parse_escalation_policy(
        parse_yaml(
            "levels:\n  1: {escalate: false}\n  2: {escalate_after: 10m, response_deadline: 90m}\n"
            "first_response: 5m\ntop_widen: [[management]]\n"
        )
    )
    assert policy.level(1).escalate_after is None
    assert policy.level(2).escalate_after == timedelta(minutes=10)
    assert policy.level(2).response_deadline == timedelta(minutes=90)
    assert policy.level(3).escalate_after == timedelta(minutes=30)
    assert policy.first_response == timedelta(minutes=5)
    assert next_step(open_incident(T0, 1), policy, at(300)) == Stop("level 1 does not escalate")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("levels: {5: {}}", r"levels\.5: levels are 1 to 4"),
        ("levels: {2: {escalate_after: soon}}", r"levels\.2\.escalate_after: invalid duration"),
        ("levels: {2: {deadline: 1h}}", r"levels\.2: unknown key 'deadline'"),
        ("top_widen: [management]", r"top_widen\[0\]"),
        ("monitor: 30m", "unknown key 'monitor'"),
    ],
)
def test_bad_policy_config_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_escalation_policy(parse_yaml(text))
