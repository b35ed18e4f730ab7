"""Business hours of the medical system team and the hold policy built on them (P1).

The team works weekdays 08:00-18:00 Asia/Tokyo; Japanese public holidays come from the
``holidays`` library, not a hand-kept list. The interval is half-open: 08:00:00 is inside,
18:00:00 is outside. Outside it, Level 1-2 items for that team wait for the next business
start and go out as one digest; Level 3-4 go at once; the VoiceDrive team is always reached.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any

import holidays

from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.lifecycle.tokyo import TOKYO, Lang, format_time, to_tokyo

_WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# No calendar has more than this many closed days in a row (Golden Week plus weekends is ~10).
_MAX_CLOSED_DAYS = 60


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours on working days; holidays from the ``holidays`` library."""

    start: time = time(8, 0)
    end: time = time(18, 0)
    weekdays: frozenset[int] = frozenset(range(5))
    country: str = "JP"
    # Extra closed days the organisation keeps beyond public holidays.
    closed_dates: frozenset[date] = field(default_factory=frozenset)

    @cached_property
    def _holidays(self) -> Any:
        return holidays.country_holidays(self.country)

    def is_business_day(self, day: date) -> bool:
        """A configured weekday that is neither a public holiday nor a closed date."""
        return (
            day.weekday() in self.weekdays
            and day not in self.closed_dates
            and day not in self._holidays
        )

    def holiday_name(self, day: date) -> str | None:
        """The public holiday's name on ``day``, if any."""
        name = self._holidays.get(day)
        return str(name) if name is not None else None

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` lies inside business hours (start inclusive, end exclusive)."""
        local = to_tokyo(at)
        return self.is_business_day(local.date()) and self.start <= local.time() < self.end

    def next_business_start(self, at: datetime) -> datetime:
        """The first business-hours start at or after ``at`` (``at`` itself when it is one)."""
        local = to_tokyo(at)
        day = local.date()
        for _ in range(_MAX_CLOSED_DAYS):
            if self.is_business_day(day):
                opening = datetime.combine(day, self.start, TOKYO)
                if opening >= local:
                    return opening
            day += timedelta(days=1)
        raise ValueError(f"no business day within {_MAX_CLOSED_DAYS} days of {local:%Y-%m-%d}")


@dataclass(frozen=True)
class HoldPolicy:
    """Which team's low-level items wait for business hours."""

    team: str = "medical"
    hours: BusinessHours = field(default_factory=BusinessHours)
    # Levels up to this one are held outside business hours; higher ones go at once.
    hold_up_to_level: int = 2


@dataclass(frozen=True)
class HoldDecision:
    """Deliver now, or hold until ``release_at`` (a business start)."""

    held: bool
    release_at: datetime | None
    reason: str

    def text(self, lang: Lang = "ja") -> str:
        """A short explanation for records and logs."""
        if not self.held:
            return ""
        when = format_time(self.release_at, lang)
        if lang == "en":
            return f"held outside business hours until {when}"
        return f"営業時間外のため {when} まで保留"


def decide_hold(policy: HoldPolicy, *, team: str, level: int, at: datetime) -> HoldDecision:
    """Whether a message for ``team`` at ``level`` raised at ``at`` waits for business hours."""
    if team != policy.team:
        return HoldDecision(False, None, f"team {team} is reached at any time")
    if level > policy.hold_up_to_level:
        return HoldDecision(False, None, f"level {level} reaches {team} at once")
    if policy.hours.is_open(at):
        return HoldDecision(False, None, "inside business hours")
    release = policy.hours.next_business_start(at)
    return HoldDecision(True, release, "outside business hours")


@dataclass(frozen=True)
class HeldItem:
    """One message waiting for business hours (no recipient details: those stay in the store)."""

    incident_id: str
    level: int
    summary: str
    raised_at: datetime
    release_at: datetime
    team: str


@dataclass(frozen=True)
class Digest:
    """Held items released together at one business start for one team."""

    team: str
    release_at: datetime
    items: tuple[HeldItem, ...]

    @property
    def key(self) -> str:
        """Stable identity, so a digest is sent once even if built twice."""
        return f"digest:{self.team}:{to_tokyo(self.release_at):%Y-%m-%dT%H:%M}"

    def text(self, lang: Lang = "ja") -> str:
        """Plain-text digest body: one line per held item, oldest first."""
        if lang == "en":
            head = f"Held outside business hours ({len(self.items)} items):"
        else:
            head = f"営業時間外に保留した通知（{len(self.items)}件）:"
        lines = [head]
        for item in self.items:
            lines.append(
                f"- [Level {item.level}] {format_time(item.raised_at, lang)} "
                f"{item.summary} ({item.incident_id})"
            )
        return "\n".join(lines)


def due_digests(items: Iterable[HeldItem], now: datetime) -> list[Digest]:
    """Digests whose release time has come, one per (team, release time), items oldest first."""
    groups: dict[tuple[str, datetime], list[HeldItem]] = {}
    for item in items:
        if item.release_at <= now:
            groups.setdefault((item.team, item.release_at), []).append(item)
    return [
        Digest(team, release, tuple(sorted(found, key=lambda i: (i.raised_at, i.incident_id))))
        for (team, release), found in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def parse_hold_policy(node: Node) -> HoldPolicy:
    """A HoldPolicy from its config mapping (every key optional)."""
    start = node.parse("start", _clock, time(8, 0))
    end = node.parse("end", _clock, time(18, 0))
    if end <= start:
        raise node.error("end", "must be after start")
    names = node.texts("weekdays", ("mon", "tue", "wed", "thu", "fri"))
    bad = [w for w in names if w not in _WEEKDAY_KEYS]
    if bad or not names:
        raise node.error("weekdays", f"use {', '.join(_WEEKDAY_KEYS)}; got {list(names)!r}")
    country = node.text("holidays", "JP")
    try:
        holidays.country_holidays(country)
    except NotImplementedError:
        raise node.error("holidays", f"no holiday calendar for country {country!r}") from None
    closed = node.parse("closed_dates", _dates, frozenset())
    hours = BusinessHours(
        start=start,
        end=end,
        weekdays=frozenset(_WEEKDAY_KEYS.index(w) for w in names),
        country=country,
        closed_dates=closed,
    )
    policy = HoldPolicy(
        team=node.text("team", "medical"),
        hours=hours,
        hold_up_to_level=node.integer("hold_up_to_level", 2, lo=0, hi=4),
    )
    node.done()
    return policy


def _clock(value: Any, path: str) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(path, "write clock times quoted, e.g. '18:00' (YAML reads 18:00 as 1080)")
    if isinstance(value, str) and len(value) == 5 and value[2] == ":":
        try:
            return time(int(value[:2]), int(value[3:]))
        except ValueError:
            pass
    raise ConfigError(path, f"expected a time 'HH:MM', got {value!r}")


def _dates(value: Any, path: str) -> frozenset[date]:
    if not isinstance(value, list):
        raise ConfigError(path, "expected a list of dates")
    out = set()
    for i, item in enumerate(value):
        if isinstance(item, date) and not isinstance(item, datetime):
            out.add(item)
            continue
        try:
            out.add(date.fromisoformat(str(item)))
        except ValueError:
            raise ConfigError(f"{path}[{i}]", f"expected a date YYYY-MM-DD, got {item!r}") from None
    return frozenset(out)
