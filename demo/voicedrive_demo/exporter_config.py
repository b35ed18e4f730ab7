"""The exporter config the demo writes, from embedded defaults, with every probe configured."""

from pathlib import Path

from voicedrive_demo.ports import Ports

_TEMPLATE = """\
# Written by voicedrive-demo on every start; edit exporter/exporter.example.yml instead.
global:
  interval: {interval}
  timeout: 4s
api:
  base_url: {api_url}
  endpoints:
    - path: /health
    - path: /api/status
notifications:
  window: 5m
  min_volume: 20
  sql:
    dsn: postgresql://{db_user}@{proxy}/{database}
    password_file: {password_file}
    connect_timeout: 2s
    query_timeout: 1s
database:
  targets:
    - name: {database}
      dsn: postgresql://{db_user}@{proxy}/{database}
      password_file: {password_file}
      connect_timeout: 2s
      query_timeout: 1s
backup:
  path_glob: {backup_glob}
host:
  cpu_sample_window: 1s
"""


def render_exporter_config(
    *,
    ports: Ports,
    database: str,
    db_user: str,
    password_file: Path,
    backup_glob: str,
    interval: str,
) -> str:
    """YAML for ``voicedrive-exporter --config.file``: API, notifications and database probes
    through the simulator (the database through its proxy), backup freshness and host."""
    return _TEMPLATE.format(
        interval=interval,
        api_url=ports.url("sim-api"),
        db_user=db_user,
        proxy=ports.address("db-proxy"),
        database=database,
        password_file=password_file,
        backup_glob=backup_glob,
    )
