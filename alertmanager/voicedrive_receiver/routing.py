"""Who owns an alert group (P7) and who hears about it at a level (P6): pure functions."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from voicedrive_receiver.config import ADDRESSLESS_KINDS, ReceiverConfig
from voicedrive_receiver.lifecycle.oncall import ON_DUTY, OnDuty, on_duty
from voicedrive_receiver.models import Alert


@dataclass(frozen=True)
class Ownership:
    """The teams and roles owning a group's systems and components."""

    systems: tuple[str, ...]
    components: tuple[str, ...]
    teams: tuple[str, ...]
    roles: tuple[str, ...]


@dataclass(frozen=True, order=True)
class Route:
    """One delivery: channel name and contact key (never the address itself)."""

    channel: str
    contact: str


def _label_values(alerts: Iterable[Alert], name: str) -> tuple[str, ...]:
    return tuple(sorted({a.labels[name] for a in alerts if a.labels.get(name)}))


def ownership(alerts: Iterable[Alert], config: ReceiverConfig) -> Ownership:
    """Owning teams by ``system`` label and roles by ``component`` label.

    A system no team claims goes to every team: over-notifying beats paging nobody.
    """
    alerts = tuple(alerts)
    systems = _label_values(alerts, "system")
    components = _label_values(alerts, "component")
    teams = tuple(
        name for name, team in config.teams.items() if any(s in team.systems for s in systems)
    ) or tuple(config.teams)
    roles = tuple(
        name
        for name, role in config.roles.items()
        if role.team in teams and any(c in role.components for c in components)
    )
    return Ownership(systems=systems, components=components, teams=teams, roles=roles)


def on_duty_of(owner: Ownership, config: ReceiverConfig, at: datetime) -> OnDuty:
    """Who the on-call schedule has on duty for the owning teams and roles at ``at``."""
    roles_by_team = {
        team: tuple(r for r in owner.roles if config.roles[r].team == team) for team in owner.teams
    }
    return on_duty(config.lifecycle.schedule, at=at, teams=owner.teams, roles_by_team=roles_by_team)


def audience_contacts(
    token: str, owner: Ownership, config: ReceiverConfig, *, at: datetime | None = None
) -> tuple[str, ...]:
    """Contact keys named by one audience token of the fan-out config."""
    if token == ON_DUTY:
        schedule = config.lifecycle.schedule
        if schedule is None:
            return ()
        if at is None:
            # No instant to look the schedule up at: the fallback never misses anyone.
            return schedule.fallback.contacts
        return on_duty_of(owner, config, at).contacts
    if token == "owning_team":  # noqa: S105 - audience keyword
        return tuple(m for t in owner.teams for m in config.teams[t].members)
    if token == "owning_role":  # noqa: S105 - audience keyword
        members = tuple(m for r in owner.roles for m in config.roles[r].members)
        # No role claims the component: the owning team as a whole is responsible.
        return members or audience_contacts("owning_team", owner, config)
    if token == "joint_team":  # noqa: S105 - audience keyword
        return tuple(m for t in config.teams.values() if t.joint for m in t.members)
    prefix, _, rest = token.partition(":")
    if prefix == "team" and rest in config.teams:
        return config.teams[rest].members
    if prefix == "role" and rest in config.roles:
        return config.roles[rest].members
    return (token,) if token in config.contacts else ()


def uses_on_duty(level: int, config: ReceiverConfig) -> bool:
    """Whether a target applying at ``level`` pages the ``on_duty`` audience."""
    return any(
        ON_DUTY in t.to
        for t in config.fanout.targets
        if (t.level <= level if config.fanout.cumulative else t.level == level)
    )


def duty_notes(
    level: int, owner: Ownership, config: ReceiverConfig, at: datetime
) -> tuple[str, str]:
    """(summary prefix, description text) stating an on-call gap; empty when there is none."""
    if not uses_on_duty(level, config):
        return "", ""
    return on_duty_of(owner, config, at).notes(config.language)


def routes_for_level(
    level: int, owner: Ownership, config: ReceiverConfig, *, at: datetime | None = None
) -> tuple[Route, ...]:
    """Every (channel, contact) that hears about a group at ``level``, sorted, no duplicates.

    ``at`` is when the notification arrived: the ``on_duty`` audience is read from the on-call
    schedule at that instant.
    """
    routes: set[Route] = set()
    for target in config.fanout.targets:
        applies = target.level <= level if config.fanout.cumulative else target.level == level
        if not applies:
            continue
        kind = config.channels[target.channel].kind
        for token in target.to:
            for contact in audience_contacts(token, owner, config, at=at):
                known = config.contacts.get(contact)
                if known is None:
                    continue
                if kind in ADDRESSLESS_KINDS or kind in known.addresses:
                    routes.add(Route(channel=target.channel, contact=contact))
    return tuple(sorted(routes))


def resolved_routes(firing_routes: Iterable[Route], config: ReceiverConfig) -> tuple[Route, ...]:
    """Where a resolved message goes: where the firing one went, on channels that take them
    (``send_resolved``; not phone calls unless configured)."""
    return tuple(
        sorted(
            {
                r
                for r in firing_routes
                if r.channel in config.channels and config.channels[r.channel].send_resolved
            }
        )
    )
