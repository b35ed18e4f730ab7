"""How many rows are due, and which of them fail: exact, without randomness or clocks."""

from voicedrive_sim.writer import RowPlan


def test_rows_due_follow_rate_times_elapsed() -> None:
    plan = RowPlan()
    assert len(plan.next_batch(rows_per_second=4, failure_ratio=0, elapsed=2.5)) == 10


def test_fractional_rows_carry_over_to_the_next_tick() -> None:
    plan = RowPlan()
    first = plan.next_batch(rows_per_second=0.4, failure_ratio=0, elapsed=1)
    second = plan.next_batch(rows_per_second=0.4, failure_ratio=0, elapsed=1)
    third = plan.next_batch(rows_per_second=0.4, failure_ratio=0, elapsed=1)
    assert [len(first), len(second), len(third)] == [0, 0, 1]


def test_failure_ratio_fails_exactly_that_share() -> None:
    plan = RowPlan()
    statuses = plan.next_batch(rows_per_second=100, failure_ratio=0.3, elapsed=1)
    assert statuses.count("failed") == 30


def test_failures_spread_across_ticks() -> None:
    plan = RowPlan()
    statuses = [
        s
        for _ in range(4)
        for s in plan.next_batch(rows_per_second=1, failure_ratio=0.5, elapsed=1)
    ]
    assert statuses == ["delivered", "failed", "delivered", "failed"]


def test_zero_rate_writes_nothing() -> None:
    assert RowPlan().next_batch(rows_per_second=0, failure_ratio=1, elapsed=60) == []
