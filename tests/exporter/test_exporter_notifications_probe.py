"""Notification success rate from real PostgreSQL rows and from an HTTP JSON endpoint."""

import uuid

import asyncpg
import pytest
from aiohttp import web
from exporter_helpers import Serve

from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_exporter.config import NotificationSettings, parse_config
from voicedrive_exporter.probes import notifications
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult

# The simulator's table, as in docs/contracts.md.
TABLE = """
CREATE TABLE notification_deliveries (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    channel text,
    status text CHECK (status IN ('delivered', 'failed'))
)"""


@pytest.fixture
async def notif_dsn(postgres: ThrowawayPostgres) -> str:
    dsn = postgres.create_database(f"notif_{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(TABLE)
    finally:
        await conn.close()
    return dsn


async def insert(dsn: str, status: str, count: int, age: str = "0 seconds") -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO notification_deliveries (created_at, channel, status) "
            "SELECT now() - $1::text::interval, 'sms', $2 FROM generate_series(1, $3)",
            age,
            status,
            count,
        )
    finally:
        await conn.close()


def sql_settings(dsn: str, extra: str = "") -> NotificationSettings:
    config = parse_config(
        f"notifications: {{window: 5m, min_volume: 10, sql: {{dsn: '{dsn}'{extra}}}}}"
    )
    assert config.notifications is not None
    return config.notifications


def values(result: ProbeResult) -> dict[str, float]:
    out = {}
    for s in result.samples:
        key = s.name + "".join(f"/{v}" for _, v in s.labels)
        out[key] = s.value
    return out


RATIO = "voicedrive_notification_success_ratio"
DELIVERED = "voicedrive_notifications_in_window/delivered"
FAILED = "voicedrive_notifications_in_window/failed"


@pytest.mark.integration
async def test_ratio_counts_only_rows_inside_the_window(notif_dsn: str, deps: ProbeDeps) -> None:
    await insert(notif_dsn, "delivered", 18)
    await insert(notif_dsn, "failed", 2)
    await insert(notif_dsn, "failed", 50, age="10 minutes")
    result = await notifications.probe(sql_settings(notif_dsn), deps=deps)
    assert result.success
    got = values(result)
    assert (got[DELIVERED], got[FAILED], got[RATIO]) == (18, 2, 0.9)
    assert got["voicedrive_notification_window_seconds"] == 300
    assert got["voicedrive_notification_min_volume"] == 10


@pytest.mark.integration
async def test_below_min_volume_exports_volume_but_no_ratio(
    notif_dsn: str, deps: ProbeDeps
) -> None:
    await insert(notif_dsn, "failed", 1)
    result = await notifications.probe(sql_settings(notif_dsn), deps=deps)
    assert result.success
    got = values(result)
    assert (got[DELIVERED], got[FAILED]) == (0, 1)
    assert RATIO not in got


@pytest.mark.integration
async def test_empty_window_exports_zero_volume_and_no_phantom_ratio(
    notif_dsn: str, deps: ProbeDeps
) -> None:
    cfg = parse_config(f"notifications: {{min_volume: 0, sql: {{dsn: '{notif_dsn}'}}}}")
    assert cfg.notifications is not None
    got = values(await notifications.probe(cfg.notifications, deps=deps))
    assert (got[DELIVERED], got[FAILED]) == (0, 0)
    assert RATIO not in got


@pytest.mark.integration
async def test_null_counts_fail_the_probe_with_reason_null(notif_dsn: str, deps: ProbeDeps) -> None:
    query = ", query: 'SELECT NULL::bigint AS delivered, 0 AS failed WHERE $1::float8 > 0'"
    result = await notifications.probe(sql_settings(notif_dsn, query), deps=deps)
    assert not result.success
    assert result.reasons == ("null",)
    assert RATIO not in values(result)
    assert DELIVERED not in values(result)


@pytest.mark.integration
async def test_zero_rows_fail_the_probe_with_reason_no_rows(
    notif_dsn: str, deps: ProbeDeps
) -> None:
    query = ", query: 'SELECT 1 AS delivered, 0 AS failed WHERE $1::float8 < 0'"
    result = await notifications.probe(sql_settings(notif_dsn, query), deps=deps)
    assert result.reasons == ("no_rows",)
    assert DELIVERED not in values(result)


@pytest.mark.integration
async def test_query_error_fails_the_probe_with_reason_query(
    notif_dsn: str, deps: ProbeDeps
) -> None:
    query = ", query: 'SELECT delivered, failed FROM no_such_table WHERE $1::float8 > 0'"
    result = await notifications.probe(sql_settings(notif_dsn, query), deps=deps)
    assert result.reasons == ("query",)
    assert RATIO not in values(result)


@pytest.mark.integration
async def test_wrong_columns_fail_the_probe_with_reason_invalid(
    notif_dsn: str, deps: ProbeDeps
) -> None:
    query = ", query: 'SELECT 1 AS ok, 2 AS bad WHERE $1::float8 > 0'"
    result = await notifications.probe(sql_settings(notif_dsn, query), deps=deps)
    assert result.reasons == ("invalid",)


def stats_app(doc: object, status: int = 200) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        del request
        return web.json_response(doc, status=status)

    app = web.Application()
    app.router.add_get("/stats", handler)
    return app


def http_settings(url: str, extra: str = "") -> NotificationSettings:
    config = parse_config(f"notifications: {{min_volume: 10, http: {{url: '{url}'{extra}}}}}")
    assert config.notifications is not None
    return config.notifications


async def test_http_source_reads_counts_from_json(serve: Serve, deps: ProbeDeps) -> None:
    base = await serve(stats_app({"window": {"ok": 95, "ko": 5}}))
    extra = ", delivered_field: window.ok, failed_field: window.ko"
    got = values(await notifications.probe(http_settings(f"{base}/stats", extra), deps=deps))
    assert (got[DELIVERED], got[FAILED], got[RATIO]) == (95, 5, 0.95)


@pytest.mark.parametrize(
    ("doc", "status", "reason"),
    [
        ({"delivered": None, "failed": 1}, 200, "null"),
        ({"delivered": 5}, 200, "invalid"),
        ({"delivered": -1, "failed": 0}, 200, "invalid"),
        ({"delivered": "many", "failed": 0}, 200, "invalid"),
        ({"delivered": 1, "failed": 0}, 500, "status"),
    ],
    ids=["null", "missing", "negative", "not-a-number", "http-500"],
)
async def test_http_source_problems_fail_the_probe_without_figures(
    serve: Serve, deps: ProbeDeps, doc: object, status: int, reason: str
) -> None:
    base = await serve(stats_app(doc, status))
    result = await notifications.probe(http_settings(f"{base}/stats"), deps=deps)
    assert result.reasons == (reason,)
    assert not {RATIO, DELIVERED, FAILED} & set(values(result))
