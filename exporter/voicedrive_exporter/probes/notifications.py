"""Notification probe: delivered and failed counts over a window, from SQL or an HTTP JSON API.

A window below ``min_volume`` exports the counts but no ratio, so that one failure out of one
never pages anyone. NULL counts, zero rows and errors fail the probe: no phantom 0 %.
"""

import asyncio
import json
import logging
import math
from typing import Any

from voicedrive_exporter.config import NotificationHttp, NotificationSettings, NotificationSql
from voicedrive_exporter.probes import pg
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult, inner_deadline, sample
from voicedrive_exporter.probes.http import FetchFailure, fetch

log = logging.getLogger("voicedrive_exporter.probes.notifications")


class CountsUnavailable(Exception):
    """The counts could not be read; ``reason`` is bounded, ``detail`` is secret-free."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


async def probe(settings: NotificationSettings, *, deps: ProbeDeps) -> ProbeResult:
    """Read the counts and turn them into the window's volume and success ratio."""
    try:
        async with asyncio.timeout(inner_deadline(settings.schedule.timeout)):
            if settings.sql is not None:
                delivered, failed = await _from_sql(settings.sql, settings.window)
            else:
                assert settings.http is not None  # config guarantees exactly one source
                delivered, failed = await _from_http(settings.http, deps)
    except TimeoutError:
        return _failed(settings, "timeout", "")
    except CountsUnavailable as exc:
        return _failed(settings, exc.reason, exc.detail)
    total = delivered + failed
    samples = [
        *_context(settings),
        sample("voicedrive_notifications_in_window", delivered, outcome="delivered"),
        sample("voicedrive_notifications_in_window", failed, outcome="failed"),
    ]
    if total >= max(settings.min_volume, 1):
        samples.append(sample("voicedrive_notification_success_ratio", delivered / total))
    return ProbeResult(success=True, samples=tuple(samples))


def _context(settings: NotificationSettings) -> list[Any]:
    return [
        sample("voicedrive_notification_window_seconds", settings.window),
        sample("voicedrive_notification_min_volume", settings.min_volume),
    ]


def _failed(settings: NotificationSettings, reason: str, detail: str) -> ProbeResult:
    log.warning("notification probe failed", extra={"reason": reason, "detail": detail})
    return ProbeResult(success=False, samples=tuple(_context(settings)), reasons=(reason,))


def _count(value: object, what: str) -> float:
    if value is None:
        raise CountsUnavailable("null", f"{what} is NULL")
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            number = float(str(value))
        except ValueError:
            raise CountsUnavailable("invalid", f"{what} is not a number") from None
    else:
        number = float(value)
    if not math.isfinite(number) or number < 0:
        raise CountsUnavailable("invalid", f"{what} is not a non-negative number")
    return number


async def _from_sql(source: NotificationSql, window: float) -> tuple[float, float]:
    try:
        async with pg.connection(source.pg) as (conn, _):
            rows = await pg.fetch(conn, source.pg, source.query, window)
    except pg.PgFailure as exc:
        raise CountsUnavailable(exc.reason, exc.detail) from None
    if not rows:
        raise CountsUnavailable("no_rows", "the query returned no rows")
    row = rows[0]
    columns = set(row.keys())  # a Record's "in" looks at values, not column names
    if not {"delivered", "failed"} <= columns:
        raise CountsUnavailable("invalid", "the query must return columns delivered and failed")
    return _count(row["delivered"], "delivered"), _count(row["failed"], "failed")


def _field(doc: object, path: str) -> object:
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise CountsUnavailable("invalid", f"field {path!r} is missing")
        value = value[part]
    return value


async def _from_http(source: NotificationHttp, deps: ProbeDeps) -> tuple[float, float]:
    try:
        fetched = await fetch(
            deps.session,
            source.url,
            tls=source.tls,
            max_redirects=5,
            max_body_bytes=source.max_body_bytes,
        )
    except FetchFailure as exc:
        raise CountsUnavailable(exc.reason) from None
    if not 200 <= fetched.status < 300:
        raise CountsUnavailable("status", f"HTTP {fetched.status}")
    try:
        doc = json.loads(fetched.body)
    except ValueError:
        raise CountsUnavailable("invalid", "body is not JSON") from None
    return (
        _count(_field(doc, source.delivered_field), source.delivered_field),
        _count(_field(doc, source.failed_field), source.failed_field),
    )


def failure(settings: NotificationSettings, reason: str) -> ProbeResult:
    """No figures, with ``reason`` (the run did not finish in time)."""
    return ProbeResult(success=False, samples=tuple(_context(settings)), reasons=(reason,))
