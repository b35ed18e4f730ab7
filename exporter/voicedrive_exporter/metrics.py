"""Every metric the exporter serves: name, type, labels and HELP (the names are a contract).

HELP texts say that values come from the last background probe, because a scrape only reads
the cached snapshot and never triggers a probe.
"""

from dataclasses import dataclass

CACHED = " (cached: from the last background probe run)"
# Dense around P5's 500 ms API threshold so that rules can ask "share of requests over 0.5 s".
API_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.75, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class MetricSpec:
    """Type, label names and HELP of one metric family (counters are named without _total)."""

    kind: str
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()


SPECS: dict[str, MetricSpec] = {
    "voicedrive_api_up": MetricSpec(
        "gauge", ("endpoint",), "1 when the endpoint answered an accepted status and body" + CACHED
    ),
    "voicedrive_api_probe_duration_seconds": MetricSpec(
        "gauge", ("endpoint",), "Seconds the last probe of the endpoint took" + CACHED
    ),
    "voicedrive_api_http_status_code": MetricSpec(
        "gauge", ("endpoint",), "HTTP status of the last response, absent without one" + CACHED
    ),
    "voicedrive_api_failure_info": MetricSpec(
        "gauge",
        ("endpoint", "reason"),
        "1 with the reason the endpoint's last probe failed" + CACHED,
    ),
    "voicedrive_api_tls_cert_expiry_timestamp_seconds": MetricSpec(
        "gauge",
        ("endpoint",),
        "Unix time the server certificate expires, when one was verified" + CACHED,
    ),
    "voicedrive_api_request_duration_seconds": MetricSpec(
        "histogram",
        ("endpoint",),
        "Seconds from request to complete body, for every response received" + CACHED,
        API_BUCKETS,
    ),
    "voicedrive_db_up": MetricSpec(
        "gauge", ("database",), "1 when a fresh connection and SELECT 1 succeeded" + CACHED
    ),
    "voicedrive_db_connect_duration_seconds": MetricSpec(
        "gauge", ("database",), "Seconds the last successful connect took" + CACHED
    ),
    "voicedrive_db_query_duration_seconds": MetricSpec(
        "gauge", ("database",), "Seconds the last successful SELECT 1 took" + CACHED
    ),
    "voicedrive_db_failure_info": MetricSpec(
        "gauge", ("database", "reason"), "1 with the reason the last database probe failed" + CACHED
    ),
    "voicedrive_notification_success_ratio": MetricSpec(
        "gauge",
        (),
        "Delivered / (delivered + failed) over the window; absent below the minimum volume"
        + CACHED,
    ),
    "voicedrive_notifications_in_window": MetricSpec(
        "gauge", ("outcome",), "Notifications in the window by outcome" + CACHED
    ),
    "voicedrive_notification_window_seconds": MetricSpec(
        "gauge", (), "Length of the window the notification figures cover" + CACHED
    ),
    "voicedrive_notification_min_volume": MetricSpec(
        "gauge", (), "Fewest notifications in the window for which a ratio is exported" + CACHED
    ),
    "voicedrive_backup_age_seconds": MetricSpec(
        "gauge", (), "Seconds since the newest backup file was modified" + CACHED
    ),
    "voicedrive_backup_size_bytes": MetricSpec(
        "gauge", (), "Size of the newest backup file" + CACHED
    ),
    "voicedrive_backup_files": MetricSpec("gauge", (), "Files matching the backup glob" + CACHED),
    "voicedrive_host_cpu_usage_ratio": MetricSpec(
        "gauge", (), "Share of CPU time busy over the probe's sample window (0..1)" + CACHED
    ),
    "voicedrive_host_memory_usage_ratio": MetricSpec(
        "gauge", (), "Share of memory in use, (total - available) / total (0..1)" + CACHED
    ),
    "voicedrive_probe_success": MetricSpec(
        "gauge", ("probe",), "1 when the probe's last run succeeded" + CACHED
    ),
    "voicedrive_probe_last_run_timestamp_seconds": MetricSpec(
        "gauge", ("probe",), "Unix time the probe's last run finished" + CACHED
    ),
    "voicedrive_probe_failure_info": MetricSpec(
        "gauge", ("probe", "reason"), "1 for each reason the probe's last run failed" + CACHED
    ),
    "voicedrive_probe_errors": MetricSpec(
        "counter", ("probe", "reason"), "Failures seen by probe runs, by bounded reason"
    ),
    "voicedrive_probe_skipped": MetricSpec(
        "counter", ("probe",), "Probe runs skipped because the previous run was still in flight"
    ),
    "voicedrive_exporter_config_last_reload_successful": MetricSpec(
        "gauge", (), "1 when the last config (re)load succeeded"
    ),
    "voicedrive_exporter_build_info": MetricSpec(
        "gauge", ("version",), "Always 1; the version label says which exporter build runs"
    ),
}
