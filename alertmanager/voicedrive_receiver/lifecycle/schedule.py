"""The on-call schedule: shifts as configuration, who is on duty, and where nobody is.

A shift is either *daily* (``start``/``end`` as ``HH:MM`` on the dates chosen by ``date``,
``dates: {from, to}`` and/or ``weekdays``) or *one-off* (``start``/``end`` as full date-times).
A daily shift whose end is not after its start crosses midnight and ends on the next day;
``24:00`` ends at the next midnight. All times are Asia/Tokyo.

The schedule's own span is ``span: {start, end}`` when given, otherwise from the first shift's
start to the last shift's end (a recurring weekday shift without a date range has no end, so
such a schedule needs ``span`` or an explicit range for the coverage check).
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.lifecycle.errors import LifecycleError
from voicedrive_receiver.lifecycle.tokyo import TOKYO, Lang, format_time, to_tokyo, weekday_name

_WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::00)?$")
# How far a gap is searched for around an instant when stating it in a message.
_GAP_SEARCH = timedelta(days=8)


class ScheduleError(LifecycleError):
    """The schedule cannot answer the question asked (e.g. an open-ended span)."""


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open interval [start, end) of aware instants."""

    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` is inside (the start is, the end is not)."""
        return self.start <= at < self.end


@dataclass(frozen=True)
class Shift:
    """One configured shift; ``roles`` empty means every role of the team."""

    name: str
    team: str
    roles: tuple[str, ...]
    contacts: tuple[str, ...]
    path: str
    # Daily shifts: the clock times and the day selection.
    start_time: time | None = None
    end_time: time | None = None
    ends_at_midnight: bool = False
    first_date: date | None = None
    last_date: date | None = None
    weekdays: frozenset[int] | None = None
    # One-off shifts: the interval itself.
    once: Interval | None = None

    def serves(self, team: str, role: str | None) -> bool:
        """Whether this shift answers for ``team`` and ``role``."""
        if self.team != team:
            return False
        return role is None or not self.roles or role in self.roles

    def runs_on(self, day: date) -> bool:
        """Whether a daily shift starts on ``day``."""
        if self.once is not None:
            return False
        if self.first_date is not None and day < self.first_date:
            return False
        if self.last_date is not None and day > self.last_date:
            return False
        return self.weekdays is None or day.weekday() in self.weekdays

    def instance_on(self, day: date) -> Interval:
        """The interval of a daily shift starting on ``day``."""
        assert self.start_time is not None
        assert self.end_time is not None
        start = datetime.combine(day, self.start_time, TOKYO)
        if self.ends_at_midnight:
            end = datetime.combine(day + timedelta(days=1), time(0), TOKYO)
        else:
            end = datetime.combine(day, self.end_time, TOKYO)
            if end <= start:
                end += timedelta(days=1)
        return Interval(start, end)

    def instances(self, window: Interval) -> list[Interval]:
        """Every occurrence overlapping ``window``."""
        if self.once is not None:
            overlap = self.once.start < window.end and window.start < self.once.end
            return [self.once] if overlap else []
        out = []
        # A daily shift is shorter than a day, so one that overlaps the window starts on the day
        # before the window's first day at the earliest.
        day = to_tokyo(window.start).date() - timedelta(days=1)
        last = to_tokyo(window.end).date()
        while day <= last:
            if self.runs_on(day):
                inst = self.instance_on(day)
                if inst.start < window.end and window.start < inst.end:
                    out.append(inst)
            day += timedelta(days=1)
        return out

    def bounds(self) -> Interval | None:
        """First start to last end, or None for a shift that recurs without end."""
        if self.once is not None:
            return self.once
        if self.first_date is None or self.last_date is None:
            return None
        days = [
            self.first_date + timedelta(days=i)
            for i in range((self.last_date - self.first_date).days + 1)
        ]
        runs = [self.instance_on(d) for d in days if self.runs_on(d)]
        if not runs:
            return None
        return Interval(runs[0].start, runs[-1].end)


@dataclass(frozen=True)
class ActiveShift:
    """A shift occurrence: the shift and its concrete interval."""

    shift: Shift
    interval: Interval


@dataclass(frozen=True)
class Fallback:
    """Who is reached when nobody is on duty (the 24 h hotline)."""

    contacts: tuple[str, ...]
    name: str


@dataclass(frozen=True)
class Duty:
    """The recipients for an alert at one instant; ``gap`` when the fallback stands in."""

    at: datetime
    team: str
    role: str | None
    contacts: tuple[str, ...]
    gap: bool
    fallback_name: str = ""
    gap_interval: Interval | None = None

    def gap_text(self, lang: Lang = "ja") -> str:
        """The sentence the message states when nobody is on duty ('' when someone is)."""
        if not self.gap:
            return ""
        who = f"{self.team}/{self.role}" if self.role else self.team
        when = format_time(self.at, lang)
        span = format_interval(self.gap_interval, lang) if self.gap_interval else ""
        if lang == "en":
            extra = f" (uncovered: {span})" if span else ""
            return (
                f"Nobody is on duty for {who} at {when}{extra}; "
                f"sent to the fallback: {self.fallback_name}."
            )
        extra = f"（不在時間帯: {span}）" if span else ""
        return (
            f"{when} に {who} の当番者がいません{extra}。"
            f"代替連絡先（{self.fallback_name}）に送信しました。"
        )


@dataclass(frozen=True)
class Schedule:
    """Shifts, the fallback and the optional explicit span."""

    shifts: tuple[Shift, ...]
    fallback: Fallback
    span: Interval | None = None
    teams: frozenset[str] = field(default_factory=frozenset)

    def own_span(self) -> Interval | None:
        """The explicit span, else first shift start to last shift end (None if open-ended)."""
        if self.span is not None:
            return self.span
        bounds = [s.bounds() for s in self.shifts]
        if not bounds or any(b is None for b in bounds):
            return None
        known = [b for b in bounds if b is not None]
        return Interval(min(b.start for b in known), max(b.end for b in known))

    def ended(self, at: datetime) -> datetime | None:
        """When the schedule's own span ended, if it ended at or before ``at``.

        From then on every on-duty page goes to the fallback: worth saying at start, since a
        schedule copied from an example or left unrenewed shows nothing else until a page.
        """
        span = self.own_span()
        return span.end if span is not None and span.end <= at else None

    def active(self, at: datetime) -> list[ActiveShift]:
        """Every shift occurrence that covers ``at``, in configuration order."""
        probe = Interval(at, at + timedelta(microseconds=1))
        return [
            ActiveShift(s, inst)
            for s in self.shifts
            for inst in s.instances(probe)
            if inst.contains(at)
        ]

    def on_duty(self, at: datetime, team: str, role: str | None = None) -> list[str]:
        """Contact keys on duty for ``team`` (and ``role``) at ``at``, without repeats."""
        out: list[str] = []
        for active in self.active(at):
            if active.shift.serves(team, role):
                out.extend(c for c in active.shift.contacts if c not in out)
        return out

    def recipients(self, at: datetime, team: str, role: str | None = None) -> Duty:
        """Who to page at ``at``: the people on duty, else the fallback with the gap stated."""
        contacts = self.on_duty(at, team, role)
        if contacts:
            return Duty(at=at, team=team, role=role, contacts=tuple(contacts), gap=False)
        window = Interval(at - _GAP_SEARCH, at + _GAP_SEARCH)
        gaps = self.coverage_gaps(window, team=team, role=role)
        around = next((g for g in gaps if g.contains(at)), None)
        # A gap reaching the search window's edge has no known end: do not invent one.
        if around is not None and (around.start == window.start or around.end == window.end):
            around = None
        return Duty(
            at=at,
            team=team,
            role=role,
            contacts=self.fallback.contacts,
            gap=True,
            fallback_name=self.fallback.name,
            gap_interval=around,
        )

    def coverage_gaps(
        self,
        window: Interval | None = None,
        *,
        team: str | None = None,
        role: str | None = None,
    ) -> list[Interval]:
        """Every uncovered interval in ``window`` (default: the schedule's own span).

        Without ``team`` any shift covers; with it, only that team's (and role's) shifts.
        """
        if window is None:
            window = self.own_span()
            if window is None:
                raise ScheduleError(
                    "the schedule has recurring shifts without an end: give a span or a range"
                )
        covered: list[Interval] = []
        for shift in self.shifts:
            if team is not None and not shift.serves(team, role):
                continue
            covered.extend(shift.instances(window))
        covered.sort()
        gaps = []
        cursor = window.start
        for inst in covered:
            if inst.start > cursor:
                gaps.append(Interval(cursor, min(inst.start, window.end)))
            cursor = max(cursor, inst.end)
            if cursor >= window.end:
                break
        if cursor < window.end:
            gaps.append(Interval(cursor, window.end))
        return [g for g in gaps if g.start < g.end]

    def roster(self, day: date) -> list[ActiveShift]:
        """Shift occurrences overlapping the Asia/Tokyo calendar day ``day``, by start."""
        window = day_interval(day)
        found = [ActiveShift(s, inst) for s in self.shifts for inst in s.instances(window)]
        return sorted(found, key=lambda a: (a.interval.start, a.interval.end))


def day_interval(day: date) -> Interval:
    """The Asia/Tokyo calendar day as an interval."""
    start = datetime.combine(day, time(0), TOKYO)
    return Interval(start, datetime.combine(day + timedelta(days=1), time(0), TOKYO))


def split_at_midnight(interval: Interval) -> list[Interval]:
    """``interval`` cut at each Asia/Tokyo midnight, so each piece lies within one day."""
    pieces = []
    start = to_tokyo(interval.start)
    end = to_tokyo(interval.end)
    while start < end:
        midnight = datetime.combine(start.date() + timedelta(days=1), time(0), TOKYO)
        piece_end = min(midnight, end)
        pieces.append(Interval(start, piece_end))
        start = piece_end
    return pieces


def format_interval(interval: Interval, lang: Lang = "ja") -> str:
    """``2025-09-01 (月) 12:00-13:00``; a piece ending at midnight ends at ``24:00``.

    An interval over several days is written start to end with both dates.
    """
    start = to_tokyo(interval.start)
    end = to_tokyo(interval.end)
    head = f"{start:%Y-%m-%d} ({weekday_name(start.date(), lang)}) {start:%H:%M}"
    if end.date() == start.date():
        return f"{head}-{end:%H:%M}"
    if end.date() == start.date() + timedelta(days=1) and end.time() == time(0):
        return f"{head}-24:00"
    return f"{head}-{end:%Y-%m-%d} ({weekday_name(end.date(), lang)}) {end:%H:%M}"


def format_gap_lines(gaps: Iterable[Interval], lang: Lang = "ja") -> list[str]:
    """One line per uncovered interval and day: ``YYYY-MM-DD (曜日) HH:MM-HH:MM``."""
    return [format_interval(piece, lang) for gap in gaps for piece in split_at_midnight(gap)]


# --- configuration -------------------------------------------------------------------------


def parse_schedule(node: Node, *, known_contacts: Sequence[str] | None = None) -> Schedule:
    """A Schedule from its config mapping; errors name the key path.

    With ``known_contacts``, every contact key must be one of them.
    """
    fallback_node = node.node("fallback", required=True)
    fallback = Fallback(
        contacts=_contacts(fallback_node, "contacts", known_contacts),
        name=fallback_node.text("name", "24時間緊急ホットライン"),
    )
    fallback_node.done()
    span = None
    if node.has("span"):
        span_node = node.node("span")
        start = span_node.parse("start", _parse_bound)
        end = span_node.parse("end", _parse_bound)
        if end <= start:
            raise span_node.error("end", "must be after span.start")
        span_node.done()
        span = Interval(start, end)
    shift_nodes = node.nodes("shifts")
    if not shift_nodes:
        raise node.error("shifts", "needs at least one shift")
    shifts = tuple(_parse_shift(n, known_contacts) for n in shift_nodes)
    node.done()
    return Schedule(
        shifts=shifts, fallback=fallback, span=span, teams=frozenset(s.team for s in shifts)
    )


def _parse_shift(node: Node, known_contacts: Sequence[str] | None) -> Shift:
    team = node.text("team")
    roles = node.texts("roles", ())
    contacts = _contacts(node, "contacts", known_contacts)
    name = node.text("name", "")
    start_raw = node.raw("start")
    end_raw = node.raw("end")
    selectors = [k for k in ("date", "dates", "weekdays") if node.has(k)]
    one_off = isinstance(start_raw, str) and _DATETIME.match(start_raw) is not None
    if one_off or isinstance(start_raw, datetime):
        if selectors:
            raise node.error(
                selectors[0], "a shift with date-times in start/end takes no date selection"
            )
        start = node.parse("start", _parse_datetime)
        end = node.parse("end", _parse_datetime)
        if end <= start:
            raise node.error("end", "must be after start")
        node.done()
        return Shift(
            name=name,
            team=team,
            roles=roles,
            contacts=contacts,
            path=node.path,
            once=Interval(start, end),
        )
    start_time = node.parse("start", _parse_clock)
    if isinstance(end_raw, str) and end_raw == "24:00":
        node.raw("end")
        end_time, midnight = time(0), True
    else:
        end_time, midnight = node.parse("end", _parse_clock), False
    if not midnight and end_time == start_time:
        raise node.error("end", "equals start; use 24:00 or date-times for a whole day")
    first = last = None
    if node.has("date") and node.has("dates"):
        raise node.error("dates", "set either date or dates, not both")
    if node.has("date"):
        first = last = node.parse("date", _parse_date)
    elif node.has("dates"):
        dates = node.node("dates")
        first = dates.parse("from", _parse_date)
        last = dates.parse("to", _parse_date)
        if last < first:
            raise dates.error("to", "must not be before dates.from")
        dates.done()
    weekdays = None
    if node.has("weekdays"):
        names = node.texts("weekdays")
        bad = [w for w in names if w not in _WEEKDAY_KEYS]
        if bad or not names:
            raise node.error("weekdays", f"use {', '.join(_WEEKDAY_KEYS)}; got {list(names)!r}")
        weekdays = frozenset(_WEEKDAY_KEYS.index(w) for w in names)
    if not selectors:
        raise node.error("date", "a daily shift needs date, dates or weekdays")
    node.done()
    return Shift(
        name=name,
        team=team,
        roles=roles,
        contacts=contacts,
        path=node.path,
        start_time=start_time,
        end_time=end_time,
        ends_at_midnight=midnight,
        first_date=first,
        last_date=last,
        weekdays=weekdays,
    )


def _contacts(node: Node, key: str, known: Sequence[str] | None) -> tuple[str, ...]:
    contacts: tuple[str, ...] = node.texts(key)
    if not contacts:
        raise node.error(key, "needs at least one contact key")
    if known is not None:
        for i, contact in enumerate(contacts):
            if contact not in known:
                raise ConfigError(
                    f"{node.path}.{key}[{i}]" if node.path else f"{key}[{i}]",
                    f"unknown contact {contact!r} (not under contacts)",
                    source=node.source,
                )
    return contacts


def _parse_clock(value: Any, path: str) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 18:00 as the base-60 integer 1080.
        raise ConfigError(path, "write clock times quoted, e.g. '18:00' (YAML reads 18:00 as 1080)")
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ConfigError(path, f"expected a time 'HH:MM', got {value!r}")
    hour, minute = int(value[:2]), int(value[3:])
    if hour > 23 or minute > 59:
        raise ConfigError(path, f"no such time of day: {value!r}")
    return time(hour, minute)


def _parse_date(value: Any, path: str) -> date:
    if isinstance(value, datetime):
        raise ConfigError(path, f"expected a date YYYY-MM-DD, got a date-time {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(path, f"expected a date YYYY-MM-DD, got {value!r}")


def _parse_datetime(value: Any, path: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=TOKYO)
        return value.astimezone(TOKYO)
    if isinstance(value, str):
        match = _DATETIME.match(value)
        if match:
            try:
                return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}").replace(
                    tzinfo=TOKYO
                )
            except ValueError:
                pass
    raise ConfigError(path, f"expected a date-time 'YYYY-MM-DD HH:MM' (Asia/Tokyo), got {value!r}")


def _parse_bound(value: Any, path: str) -> datetime:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(0), TOKYO)
    if isinstance(value, str) and not _DATETIME.match(value):
        return datetime.combine(_parse_date(value, path), time(0), TOKYO)
    return _parse_datetime(value, path)


def range_from_dates(start: date | None, end: date | None, schedule: Schedule) -> Interval:
    """The check window for ``--from``/``--to`` (both inclusive days), defaulting to the span."""
    span = schedule.own_span()
    if (start is None or end is None) and span is None:
        raise ScheduleError(
            "the schedule has recurring shifts without an end: give --from and --to"
        )
    lo = day_interval(start).start if start is not None else _known(span).start
    hi = day_interval(end).end if end is not None else _known(span).end
    if hi <= lo:
        raise ScheduleError("--to must not be before --from")
    return Interval(lo, hi)


def _known(span: Interval | None) -> Interval:
    assert span is not None
    return span
