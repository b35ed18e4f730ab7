"""Asia/Tokyo time helpers shared by the lifecycle modules (all schedule maths happens here)."""

from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")

Lang = Literal["ja", "en"]
LANGS: tuple[Lang, ...] = ("ja", "en")

_WEEKDAYS: dict[Lang, tuple[str, ...]] = {
    "ja": ("月", "火", "水", "木", "金", "土", "日"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}


def weekday_name(day: date, lang: Lang = "ja") -> str:
    """The weekday of ``day``, computed from the date (never typed by hand)."""
    return _WEEKDAYS[lang][day.weekday()]


def to_tokyo(when: datetime) -> datetime:
    """``when`` in Asia/Tokyo; naive datetimes are refused because their zone is a guess."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware instant")
    return when.astimezone(TOKYO)


def format_time(when: datetime | None, lang: Lang = "ja", *, empty: str = "") -> str:
    """``2025-09-02 10:15:00 (火) JST``: the full instant as responders read it."""
    if when is None:
        return empty
    local = to_tokyo(when)
    return f"{local:%Y-%m-%d %H:%M:%S} ({weekday_name(local.date(), lang)}) JST"


def format_span(
    value: timedelta | float | None, lang: Lang = "ja", *, empty: str = "", hours: bool = False
) -> str:
    """A wait or span as people read it: ``45秒``, ``1分30秒``, ``30分`` (``45 s``, ``1 min 30 s``).

    Whole seconds, rounded down; under a minute it is seconds, never ``0分``. With ``hours``, an
    hour or more reads ``4時間``, ``1時間30分`` (``4 h``, ``1 h 30 min``), as P2 writes deadlines.
    """
    if value is None:
        return empty
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    minutes, seconds = divmod(max(int(total), 0), 60)
    whole_hours = 0
    if hours:
        whole_hours, minutes = divmod(minutes, 60)
    if lang == "en":
        parts = [f"{whole_hours} h"] if whole_hours else []
        if minutes:
            parts.append(f"{minutes} min")
        if seconds or not parts:
            parts.append(f"{seconds} s")
        return " ".join(parts)
    text = f"{whole_hours}時間" if whole_hours else ""
    if minutes:
        text += f"{minutes}分"
    if seconds or not text:
        text += f"{seconds}秒"
    return text
