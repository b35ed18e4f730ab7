"""Config validation: one tiny invalid file per rule, with the exact message expected."""

from pathlib import Path

import pytest

from voicedrive_common.errors import ConfigError
from voicedrive_exporter.config import DEFAULT_API_ENDPOINTS, load_config, parse_config
from voicedrive_exporter.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "exporter" / "exporter.example.yml"

INVALID = [
    ("apii: {}", "<root>: unknown key 'apii'"),
    ("api: {base_url: http://x, intervall: 30s}", "api: unknown key 'intervall'"),
    (
        "api: {base_url: http://x, interval: soon}",
        "api.interval: invalid duration 'soon' (use e.g. '500ms', '30s', '5m', '1h')",
    ),
    (
        "api: {base_url: http://x, interval: 10s, timeout: 10s}",
        "api.timeout: must be below interval",
    ),
    ("global: {interval: 5s, timeout: 6s}", "global.timeout: must be below interval"),
    ("api: {}", "api.base_url: is required when endpoints are not listed"),
    ("api: {base_url: ftp://x}", "api.base_url: must be an http:// or https:// URL, got 'ftp://x'"),
    ("api: {base_url: http://x, endpoints: []}", "api.endpoints: must list at least one endpoint"),
    (
        "api: {endpoints: [{path: /health}]}",
        "api.endpoints[0].path: needs api.base_url (or give a full url)",
    ),
    (
        "api: {base_url: http://x, endpoints: [{path: health}]}",
        "api.endpoints[0].path: must start with '/', got 'health'",
    ),
    (
        "api: {base_url: http://x, endpoints: [{path: /a, url: http://y/a}]}",
        "api.endpoints[0].url: set either url or path, not both",
    ),
    (
        "api: {base_url: http://x, endpoints: [{path: /a}, {path: /a}]}",
        "api.endpoints[1].name: duplicate endpoint name '/a'",
    ),
    (
        "api: {base_url: http://x, endpoints: [{path: /a, accepted_status: [299x]}]}",
        "api.endpoints[0].accepted_status[0]: expected a status code such as 200 or a class such as"
        " 2xx, got '299x'",
    ),
    (
        "api: {base_url: http://x, endpoints: [{path: /a, method: PUT}]}",
        "api.endpoints[0].method: must be one of GET, HEAD, POST; got 'PUT'",
    ),
    (
        "api: {base_url: http://x, endpoints: [{path: /a, body_check: {field: status}}]}",
        "api.endpoints[0].body_check.equals: is required",
    ),
    (
        "api: {base_url: http://x, max_redirects: -1}",
        "api.max_redirects: must be at least 0, got -1",
    ),
    (
        "api: {base_url: http://x, max_body_bytes: lots}",
        "api.max_body_bytes: expected an integer, got a string",
    ),
    (
        "api: {base_url: http://x, tls: {ca_file: /nonexistent/ca.pem}}",
        "api.tls.ca_file: file '/nonexistent/ca.pem' does not exist",
    ),
    (
        "api: {base_url: http://x, tls: {insecure_skip_verify: yes please}}",
        "api.tls.insecure_skip_verify: expected true or false, got a string",
    ),
    ("database: {targets: []}", "database.targets: must list at least one database"),
    ("database: {targets: [{dsn: 'postgresql://u@h/d'}]}", "database.targets[0].name: is required"),
    ("database: {targets: [{name: a}]}", "database.targets[0].dsn: is required (or dsn_file)"),
    (
        "database: {targets: [{name: a, dsn: 'mysql://u@h/d'}]}",
        "database.targets[0].dsn: must be a postgresql:// URL",
    ),
    (
        "database: {targets: [{name: a, dsn: 'postgresql://h/d', password: x, password_file: /p}]}",
        "database.targets[0].password: set either password or password_file, not both",
    ),
    (
        "database: {targets: [{name: a, dsn: 'postgresql://h/d', connect_timeout: 9s}]}",
        "database.targets[0].connect_timeout: connect_timeout + query_timeout must not exceed the"
        " probe timeout",
    ),
    (
        "database: {targets: [{name: a, dsn: 'postgresql://h/d'}, {name: a, dsn: 'postgresql://h/e'}]}",
        "database.targets[1].name: duplicate database name 'a'",
    ),
    ("notifications: {window: 5m}", "notifications.sql: set exactly one of sql and http"),
    (
        "notifications: {http: {url: http://x/s}, sql: {dsn: 'postgresql://h/d'}}",
        "notifications.sql: set exactly one of sql and http",
    ),
    (
        "notifications: {http: {url: http://x/s}, min_volume: -1}",
        "notifications.min_volume: must be at least 0, got -1",
    ),
    (
        "notifications: {http: {url: http://x/s}, window: 0s}",
        "notifications.window: must be at least 1s, got '0s'",
    ),
    (
        "notifications: {http: {url: http://x/s, delivered: d}}",
        "notifications.http: unknown key 'delivered'",
    ),
    ("backup: {}", "backup.path_glob: is required"),
    ("host: {enabled: 1}", "host.enabled: expected true or false, got int"),
    ("host: {cpu_sample_window: 5s}", "host.cpu_sample_window: must be below the probe timeout"),
    ("api: [1, 2]", "api: expected a mapping, got a list"),
    (
        "api: {base_url: http://x\n",
        "<root>: invalid YAML: line 2, column 1: expected ',' or '}', but got '<stream end>'",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_config_is_rejected_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value) == message


def test_example_config_is_valid_and_enables_every_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(EXAMPLE)
    assert config.api is not None
    assert config.notifications is not None
    assert config.database is not None
    assert config.backup is not None
    assert config.host is not None


def test_api_without_endpoints_probes_health_and_status() -> None:
    config = parse_config("api: {base_url: 'http://127.0.0.1:18080/'}")
    assert config.api is not None
    assert [e.url for e in config.api.endpoints] == [
        f"http://127.0.0.1:18080{p}" for p in DEFAULT_API_ENDPOINTS
    ]
    assert [e.name for e in config.api.endpoints] == list(DEFAULT_API_ENDPOINTS)


def test_defaults_probe_every_30_seconds_with_timeouts_below_the_interval() -> None:
    config = parse_config(
        "api: {base_url: http://x}\ndatabase: {targets: [{name: a, dsn: 'postgresql://h/d'}]}"
    )
    assert config.api is not None
    assert config.database is not None
    assert config.api.schedule.interval == 30.0
    assert config.api.schedule.timeout == 5.0
    assert config.database.schedule.interval == 30.0
    assert config.database.schedule.timeout == 10.0


def test_global_schedule_applies_to_sections_without_their_own() -> None:
    config = parse_config("global: {interval: 10s, timeout: 4s}\nbackup: {path_glob: /x/*}")
    assert config.backup is not None
    assert (config.backup.schedule.interval, config.backup.schedule.timeout) == (10.0, 4.0)


def test_short_interval_shrinks_the_builtin_timeout_to_fit() -> None:
    config = parse_config("api: {base_url: http://x, interval: 2s}")
    assert config.api is not None
    assert config.api.schedule.timeout == pytest.approx(1.8)


def test_host_probe_runs_unless_switched_off() -> None:
    assert parse_config("").host is not None
    assert parse_config("host: {enabled: false}").host is None


def test_accepted_status_takes_codes_and_classes() -> None:
    config = parse_config(
        "api: {base_url: http://x, endpoints: [{path: /a, accepted_status: [204, 3xx]}]}"
    )
    assert config.api is not None
    endpoint = config.api.endpoints[0]
    assert [endpoint.accepts(s) for s in (204, 200, 302, 404)] == [True, False, True, False]


def test_head_endpoints_check_only_the_status_by_default() -> None:
    config = parse_config("api: {base_url: http://x, endpoints: [{path: /a, method: HEAD}]}")
    assert config.api is not None
    assert config.api.endpoints[0].body_check is None


def test_config_check_exits_0_for_a_valid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.yml"
    path.write_text("backup: {path_glob: /tmp/*.dump}\n")
    assert main(["--config.file", str(path), "--config.check"]) == 0
    assert capsys.readouterr().out == f"{path}: OK\n"


def test_config_check_exits_1_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("backup: {path_glob: 3}\n")
    assert main(["--config.file", str(path), "--config.check"]) == 1
    assert f"{path}: backup.path_glob: expected a string, got int" in capsys.readouterr().err


def test_config_check_does_not_need_the_secrets(tmp_path: Path) -> None:
    path = tmp_path / "secret.yml"
    path.write_text(
        "database: {targets: [{name: a, dsn: 'postgresql://u@h/d', password: '${UNSET_PW_VAR}'}]}\n"
    )
    assert main(["--config.file", str(path), "--config.check"]) == 0
