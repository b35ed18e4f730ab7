"""The ``on_duty`` fan-out audience: whoever the schedule has on duty for the owning team.

When the schedule has nobody for an owning team at that moment, the schedule's fallback (the
24 h hotline) stands in and the message says so (``gap_notes``).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from voicedrive_receiver.lifecycle.schedule import Duty, Schedule
from voicedrive_receiver.lifecycle.tokyo import Lang

ON_DUTY = "on_duty"

_SHORT_GAP = {
    "ja": "［当番不在: 代替連絡先に送信］",
    "en": "[nobody on duty: sent to the fallback]",
}


@dataclass(frozen=True)
class OnDuty:
    """The duty answers for each owning team at one instant."""

    duties: tuple[Duty, ...]

    @property
    def contacts(self) -> tuple[str, ...]:
        """Every contact to page, in order, without repeats."""
        out: list[str] = []
        for duty in self.duties:
            out.extend(c for c in duty.contacts if c not in out)
        return tuple(out)

    @property
    def gap(self) -> bool:
        """Whether the fallback stood in for some team."""
        return any(d.gap for d in self.duties)

    def notes(self, lang: Lang) -> tuple[str, str]:
        """(short prefix for the summary, full sentences for the description); empty if no gap."""
        if not self.gap:
            return "", ""
        return _SHORT_GAP[lang], " ".join(d.gap_text(lang) for d in self.duties if d.gap)


def on_duty(
    schedule: Schedule | None,
    *,
    at: datetime,
    teams: Iterable[str],
    roles_by_team: Mapping[str, tuple[str, ...]],
) -> OnDuty:
    """Who is on duty for each owning team (its first owning role, if any) at ``at``."""
    if schedule is None:
        return OnDuty(())
    duties = []
    for team in teams:
        roles = roles_by_team.get(team, ())
        duties.append(schedule.recipients(at, team, roles[0] if roles else None))
    return OnDuty(tuple(duties))
