"""The Grafana overview dashboard, built from the thresholds.

Every threshold drawn on a panel (500 ms, 95 %, 80 % / 90 %) is read from the same
``Thresholds`` the alerting rules are generated from, so a panel line cannot disagree with the
alert it illustrates. The datasource is referenced by a fixed uid that
``grafana/provisioning/datasources/prometheus.yml`` provisions.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from voicedrive_mixin import rules
from voicedrive_mixin.thresholds import Thresholds

DATASOURCE_UID = "voicedrive-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
# Grafana 10.4 writes schema 39; later versions migrate it on load.
SCHEMA_VERSION = 39
PATH = "grafana/dashboards/voicedrive-overview.json"

GREEN, YELLOW, ORANGE, RED = "green", "yellow", "orange", "red"
Steps = list[tuple[str, float | None]]


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """A panel before layout: what it shows and how."""

    title: tuple[str, str]  # (ja, en)
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    steps: Steps = field(default_factory=list)
    # "line" draws the thresholds as lines, "line+area" as coloured bands.
    threshold_style: str = "off"
    min: float | None = None
    max: float | None = None
    mappings: tuple[dict[str, Any], ...] = ()
    stack: bool = False
    width: int = 12


@dataclass(frozen=True)
class Row:
    """A titled row of panels."""

    title: tuple[str, str]
    panels: tuple[Panel, ...]


def _up_down_mappings(language: str) -> tuple[dict[str, Any], ...]:
    up, down = ("正常", "停止") if language == "ja" else ("UP", "DOWN")
    return (
        {
            "type": "value",
            "options": {
                "0": {"text": down, "color": RED, "index": 0},
                "1": {"text": up, "color": GREEN, "index": 1},
            },
        },
    )


def rows(t: Thresholds) -> tuple[Row, ...]:
    """The dashboard's content, row by row."""
    exp = f'job="{t.settings.exporter_job}"'
    rcv = f'job="{t.settings.receiver_job}"'
    settings = t.settings
    monitoring_jobs = "|".join(
        (settings.exporter_job, settings.receiver_job, settings.alertmanager_job)
    )
    slow = t.alert("VoiceDriveAPISlow")
    low = t.alert("VoiceDriveNotificationSuccessLow").threshold
    mass = t.alert("VoiceDriveNotificationMassFailure").threshold
    cpu = (
        t.alert("VoiceDriveHostCPUHigh").threshold,
        t.alert("VoiceDriveHostCPUCritical").threshold,
    )
    mem = (
        t.alert("VoiceDriveHostMemoryHigh").threshold,
        t.alert("VoiceDriveHostMemoryCritical").threshold,
    )
    quantile = f"p{slow.param('quantile') * 100:g}"
    backlog_stale = t.alert("VoiceDriveReceiverBacklogStale").threshold
    dead_window = rules.dur(t.alert("VoiceDriveReceiverDeadLetters").param("window"))
    lang = t.settings.language
    updown = _up_down_mappings(lang)

    def bands(high: float, critical: float) -> Steps:
        return [(GREEN, None), (ORANGE, high), (RED, critical)]

    return (
        Row(
            ("API", "API"),
            (
                Panel(
                    ("API 可用性（エンドポイント別）", "API availability by endpoint"),
                    (
                        Query(f"voicedrive_api_up{{{exp}}}", "{{endpoint}}"),
                        Query(f"avg(voicedrive_api_up{{{exp}}})", "avg"),
                    ),
                    unit="percentunit",
                    steps=[(RED, None), (GREEN, 1)],
                    min=0,
                    max=1,
                ),
                Panel(
                    (f"API 応答時間（{quantile}）", f"API latency ({quantile})"),
                    (
                        Query(rules.API_QUANTILE, f"{quantile} {{{{endpoint}}}}"),
                        Query(
                            f"voicedrive_api_probe_duration_seconds{{{exp}}}",
                            "probe {{endpoint}}",
                        ),
                    ),
                    unit="s",
                    steps=[(GREEN, None), (RED, slow.threshold)],
                    threshold_style="line",
                    min=0,
                ),
            ),
        ),
        Row(
            ("通知配信", "Notifications"),
            (
                Panel(
                    ("通知配信成功率", "Notification success rate"),
                    (Query(f"voicedrive_notification_success_ratio{{{exp}}}", "success"),),
                    unit="percentunit",
                    steps=[(RED, None), (ORANGE, mass), (GREEN, low)],
                    threshold_style="line",
                    min=0,
                    max=1,
                ),
                Panel(
                    ("集計期間内の通知数（結果別）", "Notifications in window by outcome"),
                    (Query(f"voicedrive_notifications_in_window{{{exp}}}", "{{outcome}}"),),
                    stack=True,
                    min=0,
                ),
            ),
        ),
        Row(
            ("データベース", "Database"),
            (
                Panel(
                    ("データベース接続", "Database up"),
                    (Query(f"voicedrive_db_up{{{exp}}}", "{{database}}"),),
                    kind="stat",
                    steps=[(RED, None), (GREEN, 1)],
                    mappings=updown,
                ),
                Panel(
                    ("データベース接続時間", "Database connect time"),
                    (
                        Query(
                            f"voicedrive_db_connect_duration_seconds{{{exp}}}",
                            "connect {{database}}",
                        ),
                        Query(
                            f"voicedrive_db_query_duration_seconds{{{exp}}}",
                            "query {{database}}",
                        ),
                    ),
                    unit="s",
                    min=0,
                ),
            ),
        ),
        Row(
            ("ホスト", "Host"),
            (
                Panel(
                    ("CPU 使用率", "CPU usage"),
                    (Query(f"voicedrive_host_cpu_usage_ratio{{{exp}}}", "{{instance}}"),),
                    unit="percentunit",
                    steps=bands(*cpu),
                    threshold_style="line+area",
                    min=0,
                    max=1,
                ),
                Panel(
                    ("メモリ使用率", "Memory usage"),
                    (Query(f"voicedrive_host_memory_usage_ratio{{{exp}}}", "{{instance}}"),),
                    unit="percentunit",
                    steps=bands(*mem),
                    threshold_style="line+area",
                    min=0,
                    max=1,
                ),
            ),
        ),
        Row(
            ("アラートとインシデント", "Alerts and incidents"),
            (
                Panel(
                    ("発報中のアラート（レベル別）", "Firing alerts by level"),
                    # The Watchdog has no level and is always firing: it is not an alert here.
                    (
                        Query(
                            'count by (level) (ALERTS{alertstate="firing", level=~"[1-4]"})',
                            "Level {{level}}",
                        ),
                    ),
                    stack=True,
                    min=0,
                    width=8,
                ),
                Panel(
                    ("対応中のインシデント（レベル別）", "Open incidents by level"),
                    (
                        Query(
                            f"sum by (level) (voicedrive_receiver_incidents_open{{{rcv}}})",
                            "Level {{level}}",
                        ),
                    ),
                    stack=True,
                    min=0,
                    width=8,
                ),
                Panel(
                    ("SLA 超過（1 時間あたり）", "SLA breaches per hour"),
                    (
                        Query(
                            "sum by (level, kind) "
                            f"(increase(voicedrive_receiver_sla_breaches_total{{{rcv}}}[1h]))",
                            "Level {{level}} {{kind}}",
                        ),
                    ),
                    min=0,
                    width=8,
                ),
            ),
        ),
        Row(
            ("監視系", "Monitoring itself"),
            (
                Panel(
                    ("スクレイプ対象の稼働", "Scrape targets up"),
                    (
                        Query(
                            f'up{{job=~"{monitoring_jobs}"}}',
                            "{{job}} {{instance}}",
                        ),
                    ),
                    kind="stat",
                    steps=[(RED, None), (GREEN, 1)],
                    mappings=updown,
                ),
                Panel(
                    ("Watchdog 最終受信からの経過", "Time since the last Watchdog heartbeat"),
                    (
                        Query(
                            "time() - max("
                            f"voicedrive_receiver_watchdog_last_seen_timestamp_seconds{{{rcv}}})",
                            "seconds",
                        ),
                    ),
                    unit="s",
                    min=0,
                ),
            ),
        ),
        Row(
            ("受信処理", "Receiver ingest"),
            (
                # max(): the journal gauges describe the store every replica shares.
                Panel(
                    ("未処理・処理失敗の受信通知", "Notifications waiting and failed"),
                    (
                        Query(f"max(voicedrive_receiver_ingest_backlog{{{rcv}}})", "waiting"),
                        Query(f"max(voicedrive_receiver_ingest_failed{{{rcv}}})", "failed"),
                    ),
                    min=0,
                    width=8,
                ),
                Panel(
                    ("最も古い未処理通知の経過時間", "Age of the oldest waiting notification"),
                    (
                        Query(
                            f"max(voicedrive_receiver_ingest_backlog_oldest_age_seconds{{{rcv}}})",
                            "oldest",
                        ),
                    ),
                    unit="s",
                    steps=[(GREEN, None), (RED, backlog_stale)],
                    threshold_style="line",
                    min=0,
                    width=8,
                ),
                Panel(
                    (
                        f"配信断念（チャネル別、{dead_window}）",
                        f"Dead letters by channel ({dead_window})",
                    ),
                    (
                        Query(
                            "sum by (channel) (increase(voicedrive_receiver_dead_letters_total"
                            f"{{{rcv}}}[{dead_window}]))",
                            "{{channel}}",
                        ),
                    ),
                    min=0,
                    width=8,
                ),
            ),
        ),
        Row(
            ("ページング配信", "Paging deliveries"),
            (
                Panel(
                    ("配信（チャネル別）", "Deliveries by channel"),
                    (
                        Query(
                            "sum by (channel) (rate(voicedrive_receiver_deliveries_total"
                            f'{{{rcv}, outcome="success"}}[$__rate_interval]))',
                            "{{channel}}",
                        ),
                    ),
                    unit="ops",
                    min=0,
                    width=8,
                ),
                Panel(
                    ("配信失敗（チャネル別）", "Delivery failures by channel"),
                    (
                        Query(
                            "sum by (channel, outcome) (rate(voicedrive_receiver_deliveries_total"
                            f'{{{rcv}, outcome=~"retry|dead_letter"}}[$__rate_interval]))',
                            "{{channel}} {{outcome}}",
                        ),
                    ),
                    unit="ops",
                    min=0,
                    width=8,
                ),
                Panel(
                    ("未配信キュー（チャネル別）", "Outbox depth by channel"),
                    (
                        Query(
                            f"sum by (channel) (voicedrive_receiver_outbox_depth{{{rcv}}})",
                            "{{channel}}",
                        ),
                        Query(
                            "max by (channel) "
                            f"(voicedrive_receiver_outbox_oldest_pending_age_seconds{{{rcv}}})",
                            "oldest {{channel}} (s)",
                        ),
                    ),
                    min=0,
                    width=8,
                ),
            ),
        ),
    )


def _thresholds(steps: Steps) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps or [(GREEN, None)]],
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int, language: str) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": _thresholds(panel.steps),
        "mappings": list(panel.mappings),
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    options: dict[str, Any]
    if panel.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": panel.threshold_style},
        }
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
        }
    ja, en = panel.title
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": ja if language == "ja" else en,
        "description": en if language == "ja" else ja,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
                "range": True,
                "instant": False,
            }
            for i, q in enumerate(panel.queries)
        ],
    }


def dashboard(t: Thresholds) -> dict[str, Any]:
    """The overview dashboard as Grafana's JSON model."""
    language = t.settings.language
    panels: list[dict[str, Any]] = []
    y = 0
    for row in rows(t):
        ja, en = row.title
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": ja if language == "ja" else en,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel_json(panel, len(panels) + 1, x, y, language))
            x += panel.width
        y += 8
    title = "VoiceDrive 監視概要" if language == "ja" else "VoiceDrive overview"
    return {
        "uid": t.settings.dashboard_uid,
        "title": title,
        "tags": ["voicedrive"],
        "timezone": "Asia/Tokyo",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def overview(t: Thresholds) -> str:
    """The overview dashboard file's text (stable: same thresholds, same bytes)."""
    return json.dumps(dashboard(t), indent=2, ensure_ascii=False) + "\n"
