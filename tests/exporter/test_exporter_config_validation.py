"""Config values that would only fail at run time (or page falsely) are rejected at load."""

import dataclasses

import pytest
from aiohttp import web
from exporter_helpers import LogCapture, Serve

from voicedrive_common.errors import ConfigError
from voicedrive_exporter.config import ApiSettings, parse_config
from voicedrive_exporter.probes import api
from voicedrive_exporter.probes.base import ProbeDeps

PASSWORD = "s3cr3t-Pw"


def rejected(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value)


def endpoint_with_headers(headers: str) -> str:
    return f"api: {{endpoints: [{{url: 'http://127.0.0.1:1/health', headers: {headers}}}]}}\n"


def test_header_name_with_a_line_feed_is_rejected() -> None:
    message = rejected(endpoint_with_headers('{"X-A\\nInjected": v}'))
    assert message.startswith("api.endpoints[0].headers: invalid header name 'X-A\\nInjected'")


def test_header_name_with_a_space_is_rejected() -> None:
    message = rejected(endpoint_with_headers('{"X A": v}'))
    assert message.startswith("api.endpoints[0].headers: invalid header name 'X A'")


def test_header_value_with_crlf_is_rejected_without_echoing_it() -> None:
    message = rejected(endpoint_with_headers('{Authorization: "Bearer tok\\r\\nX-B: 1"}'))
    assert message == (
        "api.endpoints[0].headers.Authorization: "
        "header value must not contain control characters (CR, LF, NUL)"
    )
    assert "tok" not in message


def test_header_value_with_nul_is_rejected() -> None:
    message = rejected(endpoint_with_headers('{X-A: "a\\0b"}'))
    assert "header value must not contain control characters" in message


def test_valid_header_with_a_tab_in_the_value_is_accepted() -> None:
    config = parse_config(endpoint_with_headers('{X-Request-Id: "a\\tb", "X_Odd!~": ok}'))
    assert config.api is not None
    assert config.api.endpoints[0].headers == (("X-Request-Id", "a\tb"), ("X_Odd!~", "ok"))


def test_empty_endpoint_name_is_rejected() -> None:
    message = rejected("api: {endpoints: [{url: 'http://127.0.0.1:1/health', name: ''}]}\n")
    assert message == "api.endpoints[0].name: must not be empty"


def test_empty_database_name_is_rejected() -> None:
    message = rejected("database: {targets: [{name: ' ', dsn: 'postgresql://h/d'}]}\n")
    assert message == "database.targets[0].name: must not be empty"


def test_empty_backup_path_glob_is_rejected() -> None:
    assert rejected("backup: {path_glob: ''}\n") == "backup.path_glob: must not be empty"


@pytest.mark.parametrize("port", ["0", "65536", "99999", "x1"])
def test_dsn_port_outside_1_to_65535_is_rejected_without_the_password(port: str) -> None:
    dsn = f"postgresql://u:{PASSWORD}@db.example:{port}/app"
    message = rejected(f"database: {{targets: [{{name: main, dsn: '{dsn}'}}]}}\n")
    assert message == "database.targets[0].dsn: port must be a number from 1 to 65535"
    assert PASSWORD not in message


def test_dsn_port_of_a_second_host_is_checked() -> None:
    dsn = f"postgresql://u:{PASSWORD}@a:5432,b:70000/app"
    message = rejected(f"database: {{targets: [{{name: main, dsn: '{dsn}'}}]}}\n")
    assert message.endswith("port must be a number from 1 to 65535")


def test_unknown_sslmode_is_rejected_without_the_password() -> None:
    dsn = f"postgresql://u:{PASSWORD}@db:5432/app?sslmode=sometimes"
    message = rejected(f"database: {{targets: [{{name: main, dsn: '{dsn}'}}]}}\n")
    assert message == (
        "database.targets[0].dsn: sslmode must be one of disable, allow, prefer, require, "
        "verify-ca, verify-full; got 'sometimes'"
    )
    assert PASSWORD not in message


def test_unknown_sslmode_of_the_notifications_dsn_is_rejected() -> None:
    text = "notifications: {sql: {dsn: 'postgresql://h/d?sslmode=on'}}\n"
    assert "notifications.sql.dsn: sslmode must be one of" in rejected(text)


def test_valid_dsn_with_ipv6_host_port_and_sslmode_is_accepted() -> None:
    dsn = "postgresql://u:p@[::1]:5432/app?sslmode=verify-full"
    config = parse_config(f"database: {{targets: [{{name: main, dsn: '{dsn}'}}]}}\n")
    assert config.database is not None


async def test_unexpected_error_on_one_endpoint_leaves_the_others_up(
    serve: Serve, deps: ProbeDeps, logs: LogCapture
) -> None:
    async def ok(request: web.Request) -> web.Response:
        del request
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_get("/api/status", ok)
    base = await serve(app)
    config = parse_config(f"api: {{base_url: '{base}'}}\n")
    assert config.api is not None
    # A header the loader now refuses, set behind its back: aiohttp raises ValueError on send,
    # standing in for any surprise inside one endpoint's probe.
    broken = dataclasses.replace(config.api.endpoints[0], headers=(("X-A\nInjected", "v"),))
    settings: ApiSettings = dataclasses.replace(
        config.api, endpoints=(broken, config.api.endpoints[1])
    )
    result = await api.probe(settings, deps=deps)
    up = {
        dict(s.labels)["endpoint"]: s.value for s in result.samples if s.name == "voicedrive_api_up"
    }
    assert up == {"/health": 0, "/api/status": 1}
    assert "api probe hit an unexpected error" in logs.text
