"""The exporter config the demo writes, from embedded defaults, with every probe configured."""

from pathlib import Path

from voicedrive_common.durations import parse_duration
from voicedrive_demo.ports import Ports

_TEMPLATE = """\
# Written by voicedrive-demo on every start; edit exporter/exporter.example.yml instead.
global:
  interval: {interval}
  timeout: {timeout}
api:
  base_url: {api_url}
  endpoints:
    - path: /health
    - path: /api/status
notifications:
  window: {notification_window}
  min_volume: 20
  sql:
    dsn: postgresql://{db_user}@{proxy}/{database}
    password_file: {password_file}
    connect_timeout: {connect_timeout}
    query_timeout: {query_timeout}
database:
  targets:
    - name: {database}
      dsn: postgresql://{db_user}@{proxy}/{database}
      password_file: {password_file}
      connect_timeout: {connect_timeout}
      query_timeout: {query_timeout}
backup:
  path_glob: {backup_glob}
host:
  cpu_sample_window: {cpu_sample_window}
"""


def render_exporter_config(
    *,
    ports: Ports,
    database: str,
    db_user: str,
    password_file: Path,
    backup_glob: str,
    interval: str,
    timeout: str = "4s",
    notification_window: str = "5m",
) -> str:
    """YAML for ``voicedrive-exporter --config.file``: API, notifications and database probes
    through the simulator (the database through its proxy), backup freshness and host."""
    # Each check must fit the probe timeout: a database check half to connect, a quarter to
    # query; the CPU sample a quarter (the demo's 4s gives 2s, 1s and 1s).
    seconds = parse_duration(timeout, "timeout")
    return _TEMPLATE.format(
        interval=interval,
        timeout=timeout,
        notification_window=notification_window,
        connect_timeout=_millis(seconds / 2),
        query_timeout=_millis(seconds / 4),
        cpu_sample_window=_millis(seconds / 4),
        api_url=ports.url("sim-api"),
        db_user=db_user,
        proxy=ports.address("db-proxy"),
        database=database,
        password_file=password_file,
        backup_glob=backup_glob,
    )


def _millis(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"
