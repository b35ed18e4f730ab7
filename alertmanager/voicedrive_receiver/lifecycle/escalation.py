"""Incident lifecycle, escalation steps and SLA evaluation (P2, P8), as pure functions.

States: ``open`` (firing, nobody has acknowledged) -> ``acknowledged`` -> ``monitoring``
(resolved: the moment of resolution is ``resolved_at`` and starts the 30-minute watch of P8
step 4) -> ``closed``. A firing notification during monitoring reopens the same incident; after
the watch it belongs to a new incident.

Time limits are compared the same way everywhere: a limit is reached *at* its instant. The
escalation due at 30:00 happens at 30:00 (not at 29:59); a re-fire 30:00 after resolution is a
new incident; a response at the deadline instant is late.

Escalation follows grafana/oncall's shape: ``next_step`` looks at an incident and the clock and
returns one small result (escalate, re-page, close, wait until T, or stop with a reason); the
caller applies it with ``apply_step``. Each step has a ``key`` that is unique per incident, so a
scheduler running on several replicas can claim it once (a stale or duplicate run is dropped).
Alertmanager's repeats never reset the escalation clock or lower a level.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from voicedrive_common.confload import Node
from voicedrive_receiver.lifecycle.errors import LifecycleError

LEVELS = (1, 2, 3, 4)
TOP_LEVEL = 4


class State(StrEnum):
    """Where an incident is in its lifecycle."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    MONITORING = "monitoring"
    CLOSED = "closed"


class TransitionError(LifecycleError):
    """An operation does not apply to the incident's state (the API answers 409)."""


# --- policy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelPolicy:
    """Per-level limits: the P2 response deadline and when an unanswered incident goes up."""

    level: int
    response_deadline: timedelta
    # None: this level never escalates on its own.
    escalate_after: timedelta | None = timedelta(minutes=30)


DEFAULT_DEADLINES = {
    1: timedelta(hours=4),
    2: timedelta(hours=2),
    3: timedelta(hours=1),
    4: timedelta(minutes=30),
}


@dataclass(frozen=True)
class EscalationPolicy:
    """Every timing rule of the lifecycle, with the protocol's defaults."""

    levels: dict[int, LevelPolicy] = field(
        default_factory=lambda: {lv: LevelPolicy(lv, d) for lv, d in DEFAULT_DEADLINES.items()}
    )
    first_response: timedelta = timedelta(minutes=15)
    monitoring: timedelta = timedelta(minutes=30)
    # Level 4 cannot go higher: it re-pages every ``top_repeat`` and widens the audience.
    top_repeat: timedelta = timedelta(minutes=30)
    # Audience added at each re-page (contact or group keys); the last stage repeats.
    top_widen: tuple[tuple[str, ...], ...] = ()

    def level(self, level: int) -> LevelPolicy:
        """The policy of ``level``."""
        return self.levels[level]

    def audience(self, repage_round: int) -> tuple[str, ...]:
        """Everyone added up to re-page ``repage_round`` (1-based), in configuration order."""
        out: list[str] = []
        for stage in self.top_widen[: max(0, repage_round)]:
            out.extend(c for c in stage if c not in out)
        return tuple(out)


def parse_escalation_policy(node: Node, *, monitoring: float = 1800.0) -> EscalationPolicy:
    """An EscalationPolicy from its config mapping (every key optional).

    The watch after resolution is the receiver's ``incidents.reopen_within``, passed in as
    ``monitoring`` seconds, so the two can never disagree.
    """
    levels = {}
    # Keys may be written 1 or "1": YAML makes the first an integer.
    raw_levels = node.raw("levels", {})
    if not isinstance(raw_levels, dict):
        raise node.error("levels", "expected a mapping of level to settings")
    levels_path = f"{node.path}.levels" if node.path else "levels"
    by_level: dict[int, Node] = {}
    for key, value in raw_levels.items():
        if str(key) not in {str(lv) for lv in LEVELS}:
            raise node.error(f"levels.{key}", "levels are 1 to 4")
        by_level[int(key)] = Node(value, f"{levels_path}.{key}", node.source)
    for lv in LEVELS:
        deadline = DEFAULT_DEADLINES[lv]
        after: timedelta | None = timedelta(minutes=30)
        sub = by_level.get(lv)
        if sub is not None:
            deadline = timedelta(
                seconds=sub.duration("response_deadline", deadline.total_seconds(), lo=1)
            )
            if sub.flag("escalate", True):
                after = timedelta(seconds=sub.duration("escalate_after", 1800.0, lo=1))
            else:
                sub.raw("escalate_after", None)
                after = None
            sub.done()
        levels[lv] = LevelPolicy(lv, deadline, after)
    widen_raw = node.sequence("top_widen", [])
    widen = []
    for i, stage in enumerate(widen_raw):
        if not isinstance(stage, list) or not all(isinstance(c, str) for c in stage) or not stage:
            raise node.error(f"top_widen[{i}]", "expected a non-empty list of contact keys")
        widen.append(tuple(stage))
    policy = EscalationPolicy(
        levels=levels,
        first_response=timedelta(seconds=node.duration("first_response", 900.0, lo=1)),
        top_repeat=timedelta(seconds=node.duration("top_repeat", 1800.0, lo=1)),
        top_widen=tuple(widen),
        monitoring=timedelta(seconds=monitoring),
    )
    node.done()
    return policy


# --- the incident's lifecycle ---------------------------------------------------------------

ChangeReason = Literal["opened", "escalated", "raised"]


@dataclass(frozen=True)
class LevelChange:
    """One entry of the level history."""

    at: datetime
    from_level: int | None
    to_level: int
    reason: ChangeReason


@dataclass(frozen=True)
class Lifecycle:
    """The timing-relevant state of one incident (the store keeps it, this module decides)."""

    state: State
    level: int
    opened_at: datetime
    # When the current escalation wait began: opening, the last escalation, re-page, raise or
    # reopen. Repeats of the same alert never move it.
    clock_from: datetime
    history: tuple[LevelChange, ...]
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    repages: int = 0
    reopened: int = 0

    def reached_at(self, level: int) -> datetime | None:
        """When the incident first reached ``level`` (None if it never did)."""
        for change in self.history:
            if change.to_level >= level:
                return change.at
        return None


def open_incident(at: datetime, level: int) -> Lifecycle:
    """A new incident firing at ``level`` since ``at``."""
    _check_level(level)
    return Lifecycle(
        state=State.OPEN,
        level=level,
        opened_at=at,
        clock_from=at,
        history=(LevelChange(at, None, level, "opened"),),
    )


FireKind = Literal["repeat", "raised", "reopened", "new"]


@dataclass(frozen=True)
class FireOutcome:
    """What a firing notification did: ``new`` means it belongs to a new incident."""

    kind: FireKind
    lifecycle: Lifecycle


def on_firing(lc: Lifecycle, at: datetime, level: int, policy: EscalationPolicy) -> FireOutcome:
    """Apply a firing notification at ``level`` (the group's highest) received at ``at``."""
    _check_level(level)
    if lc.state is State.CLOSED or (
        lc.state is State.MONITORING and monitoring_over(lc, at, policy)
    ):
        return FireOutcome("new", lc)
    if lc.state is State.MONITORING:
        reopened = replace(
            lc,
            state=State.ACKNOWLEDGED if lc.acknowledged_at else State.OPEN,
            resolved_at=None,
            reopened=lc.reopened + 1,
            # Unanswered again: the responders get a fresh escalation wait from now.
            clock_from=at,
        )
        return FireOutcome("reopened", _raise_to(reopened, at, level))
    if level > lc.level:
        return FireOutcome("raised", _raise_to(lc, at, level))
    return FireOutcome("repeat", lc)


def _raise_to(lc: Lifecycle, at: datetime, level: int) -> Lifecycle:
    if level <= lc.level:
        return lc
    change = LevelChange(at, lc.level, level, "raised")
    return replace(lc, level=level, clock_from=at, history=(*lc.history, change))


def acknowledge(lc: Lifecycle, at: datetime, by: str) -> Lifecycle:
    """Acknowledge: escalation stops and ``by`` becomes the responder of record."""
    if not by.strip():
        raise TransitionError("an acknowledgement needs the name of who acknowledges")
    if lc.state is State.CLOSED:
        raise TransitionError("the incident is closed")
    if lc.acknowledged_at is not None:
        # The first acknowledgement is the one measured; a second one changes nothing.
        return lc if lc.state is not State.OPEN else replace(lc, state=State.ACKNOWLEDGED)
    state = State.ACKNOWLEDGED if lc.state is State.OPEN else lc.state
    return replace(lc, state=state, acknowledged_at=at, acknowledged_by=by.strip())


def resolve(lc: Lifecycle, at: datetime) -> Lifecycle:
    """Resolve (by Alertmanager or a person): the 30-minute watch starts."""
    if lc.state in (State.MONITORING, State.CLOSED):
        return lc
    return replace(lc, state=State.MONITORING, resolved_at=at)


def monitoring_over(lc: Lifecycle, at: datetime, policy: EscalationPolicy) -> bool:
    """Whether the watch after resolution has ended at ``at``."""
    return lc.resolved_at is not None and at >= lc.resolved_at + policy.monitoring


# --- escalation steps -----------------------------------------------------------------------


@dataclass(frozen=True)
class Escalate:
    """Raise the incident one level and notify the new level's channels."""

    from_level: int
    to_level: int
    due_at: datetime

    @property
    def key(self) -> str:
        """Unique per incident: a level is entered by escalation at most once."""
        return f"escalate:{self.from_level}->{self.to_level}"


@dataclass(frozen=True)
class Repage:
    """Level 4 again: page the top level once more, with the widened audience."""

    level: int
    round: int
    due_at: datetime
    audience: tuple[str, ...]

    @property
    def key(self) -> str:
        """Unique per incident and round."""
        return f"repage:{self.round}"


@dataclass(frozen=True)
class Close:
    """The watch after resolution is over without a re-fire."""

    due_at: datetime
    reopened: int

    @property
    def key(self) -> str:
        """Unique per incident and reopening."""
        return f"close:{self.reopened}"


@dataclass(frozen=True)
class Wait:
    """Nothing to do until ``until``; ``then`` says what is expected then."""

    until: datetime
    then: str


@dataclass(frozen=True)
class Stop:
    """No timer applies; ``reason`` says why."""

    reason: str


Step = Escalate | Repage | Close | Wait | Stop
Action = Escalate | Repage | Close


def next_step(lc: Lifecycle, policy: EscalationPolicy, now: datetime) -> Step:
    """The one thing to do about ``lc`` at ``now``."""
    if lc.state is State.CLOSED:
        return Stop("closed")
    if lc.state is State.MONITORING:
        assert lc.resolved_at is not None
        due = lc.resolved_at + policy.monitoring
        if now >= due:
            return Close(due, lc.reopened)
        return Wait(due, "close")
    if lc.state is State.ACKNOWLEDGED:
        return Stop(f"acknowledged by {lc.acknowledged_by}")
    if lc.level >= TOP_LEVEL:
        due = lc.clock_from + policy.top_repeat
        round_ = lc.repages + 1
        if now >= due:
            return Repage(lc.level, round_, due, policy.audience(round_))
        return Wait(due, f"repage:{round_}")
    after = policy.level(lc.level).escalate_after
    if after is None:
        return Stop(f"level {lc.level} does not escalate")
    due = lc.clock_from + after
    if now >= due:
        return Escalate(lc.level, lc.level + 1, due)
    return Wait(due, f"escalate:{lc.level}->{lc.level + 1}")


def apply_step(lc: Lifecycle, step: Action) -> Lifecycle:
    """The incident after ``step``; a step that no longer fits (stale) changes nothing."""
    if isinstance(step, Close):
        if lc.state is not State.MONITORING or lc.reopened != step.reopened:
            return lc
        return replace(lc, state=State.CLOSED, closed_at=step.due_at)
    if lc.state is not State.OPEN:
        return lc
    if isinstance(step, Escalate):
        if lc.level != step.from_level:
            return lc
        change = LevelChange(step.due_at, step.from_level, step.to_level, "escalated")
        return replace(
            lc, level=step.to_level, clock_from=step.due_at, history=(*lc.history, change)
        )
    if lc.level < TOP_LEVEL or lc.repages + 1 != step.round:
        return lc
    return replace(lc, repages=step.round, clock_from=step.due_at)


def run_due(
    lc: Lifecycle, policy: EscalationPolicy, now: datetime
) -> tuple[Lifecycle, list[Action]]:
    """Apply every step due by ``now`` in order (catching up after downtime); bounded."""
    done: list[Action] = []
    # Each step moves the clock forward by at least a second, and a lifecycle has few steps
    # before re-pages; the bound only guards against a misconfigured zero interval.
    for _ in range(1000):
        step = next_step(lc, policy, now)
        if not isinstance(step, Escalate | Repage | Close):
            break
        lc = apply_step(lc, step)
        done.append(step)
    return lc, done


# --- SLA ------------------------------------------------------------------------------------

Verdict = Literal["met", "breached", "pending"]


@dataclass(frozen=True)
class SlaResult:
    """Time to acknowledge and to resolve against the first-response target and deadline."""

    level: int
    first_response_due: datetime
    response_due: datetime
    time_to_acknowledge: timedelta | None
    time_to_resolve: timedelta | None
    first_response: Verdict
    response: Verdict
    # The level whose configured deadline binds (``response_due``), and that deadline.
    response_level: int = 0
    response_deadline: timedelta | None = None

    @property
    def breaches(self) -> tuple[str, ...]:
        """The breached kinds (``first_response``, ``response``), as metrics label them."""
        out = []
        if self.first_response == "breached":
            out.append("first_response")
        if self.response == "breached":
            out.append("response")
        return tuple(out)


def response_due(lc: Lifecycle, policy: EscalationPolicy) -> datetime:
    """The resolution deadline: each level's P2 deadline counted from when it was reached.

    An escalation brings the stricter deadline of the higher level, from the escalation on;
    the earliest of them is the one that binds.
    """
    return binding_deadline(lc, policy)[0]


def binding_deadline(lc: Lifecycle, policy: EscalationPolicy) -> tuple[datetime, int]:
    """``response_due`` and the level whose deadline it is (the lowest one on a tie)."""
    dues = []
    for level in range(lc.history[0].to_level, lc.level + 1):
        reached = lc.reached_at(level)
        if reached is not None:
            dues.append((reached + policy.level(level).response_deadline, level))
    return min(dues)


def evaluate_sla(lc: Lifecycle, policy: EscalationPolicy, now: datetime) -> SlaResult:
    """The SLA verdicts at ``now`` (``pending`` while the deadline is still ahead)."""
    first_due = lc.opened_at + policy.first_response
    resp_due, resp_level = binding_deadline(lc, policy)
    # A resolution before anyone acknowledged is also a first response.
    answered = [t for t in (lc.acknowledged_at, lc.resolved_at) if t is not None]
    first_answer = min(answered) if answered else None
    return SlaResult(
        level=lc.level,
        first_response_due=first_due,
        response_due=resp_due,
        time_to_acknowledge=(lc.acknowledged_at - lc.opened_at) if lc.acknowledged_at else None,
        time_to_resolve=(lc.resolved_at - lc.opened_at) if lc.resolved_at else None,
        first_response=_verdict(first_answer, first_due, now),
        response=_verdict(lc.resolved_at, resp_due, now),
        response_level=resp_level,
        response_deadline=policy.level(resp_level).response_deadline,
    )


def _verdict(done_at: datetime | None, due: datetime, now: datetime) -> Verdict:
    if done_at is not None:
        return "met" if done_at < due else "breached"
    return "breached" if now >= due else "pending"


def _check_level(level: int) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be 1-4, got {level!r}")


def level_names(lang: str = "ja") -> Sequence[str]:
    """P2 level names, index 0 unused."""
    if lang == "en":
        return ("", "minor", "medium", "severe", "system down")
    return ("", "軽微な問題", "中程度の問題", "重大な問題", "システム停止")
