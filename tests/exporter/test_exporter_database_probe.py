"""Database probe against a real PostgreSQL server and raw TCP listeners."""

import asyncio
import time
from pathlib import Path

import pytest
from exporter_helpers import LogCapture, RawServe, forwarder, never_answer

from voicedrive_common.throwaway_pg import ThrowawayPostgres, free_port
from voicedrive_exporter.config import DatabaseSettings, parse_config
from voicedrive_exporter.probes import database
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult

pytestmark = pytest.mark.integration
SPECIAL = "p@ss#w:o/r%d&x=y!z"


def settings(yaml: str) -> DatabaseSettings:
    config = parse_config(yaml)
    assert config.database is not None
    return config.database


def target(
    dsn: str, extra: str = "", *, connect_timeout: str = "10s", query_timeout: str = "4s"
) -> str:
    # Generous by default: a loaded CI machine once took over 1 s to refuse a wrong password
    # (SCRAM on both sides), which the probe rightly called a timeout. The timeout test sets
    # its own short one.
    return (
        "database: {interval: 30s, timeout: 15s, targets: [{name: main, "
        f"dsn: '{dsn}', connect_timeout: {connect_timeout}, "
        f"query_timeout: {query_timeout}{extra}}}]}}"
    )


def up(result: ProbeResult) -> float:
    [value] = [s.value for s in result.samples if s.name == "voicedrive_db_up"]
    return value


def names(result: ProbeResult) -> set[str]:
    return {s.name for s in result.samples}


async def test_fresh_connection_and_select_1_is_up_with_durations(
    postgres: ThrowawayPostgres, deps: ProbeDeps
) -> None:
    result = await database.probe(settings(target(postgres.dsn)), deps=deps)
    assert result.success
    assert up(result) == 1
    assert {
        "voicedrive_db_connect_duration_seconds",
        "voicedrive_db_query_duration_seconds",
    } <= names(result)


async def test_password_full_of_special_characters_works(
    postgres: ThrowawayPostgres, deps: ProbeDeps
) -> None:
    dsn = postgres.create_role("exporter_special", SPECIAL)
    assert (await database.probe(settings(target(dsn)), deps=deps)).success


async def test_password_from_a_file_works(
    postgres: ThrowawayPostgres, deps: ProbeDeps, tmp_path: Path
) -> None:
    postgres.create_role("exporter_file", SPECIAL + "f")
    (tmp_path / "pw").write_text(SPECIAL + "f\n")
    dsn = f"postgresql://exporter_file@127.0.0.1:{postgres.port}/postgres"
    yaml = target(dsn, f", password_file: '{tmp_path}/pw'")
    assert (await database.probe(settings(yaml), deps=deps)).success


async def test_password_from_the_environment_works(
    postgres: ThrowawayPostgres, deps: ProbeDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres.create_role("exporter_env", SPECIAL + "e")
    monkeypatch.setenv("EXPORTER_TEST_PW", SPECIAL + "e")
    dsn = f"postgresql://exporter_env@127.0.0.1:{postgres.port}/postgres"
    yaml = target(dsn, ", password: '${EXPORTER_TEST_PW}'")
    assert (await database.probe(settings(yaml), deps=deps)).success


async def test_wrong_password_is_down_with_reason_auth_and_never_shows_the_password(
    postgres: ThrowawayPostgres, deps: ProbeDeps, logs: LogCapture
) -> None:
    postgres.create_role("exporter_auth", "right-password")
    wrong = "Wr0ng@#:/%&=!secret"
    dsn = postgres.dsn_for("exporter_auth", wrong)
    result = await database.probe(settings(target(dsn)), deps=deps)
    assert up(result) == 0
    assert result.reasons == ("auth",)
    text = logs.text + repr(result)
    assert "reason=auth" in logs.text
    assert wrong not in text
    assert "Wr0ng" not in text


async def test_listener_that_never_speaks_is_down_with_reason_timeout_within_the_timeout(
    raw_server: RawServe, deps: ProbeDeps
) -> None:
    port = await raw_server(never_answer)
    started = time.monotonic()
    result = await database.probe(
        settings(
            target(
                f"postgresql://u:p@127.0.0.1:{port}/d", connect_timeout="1s", query_timeout="500ms"
            )
        ),
        deps=deps,
    )
    assert result.reasons == ("timeout",)
    assert up(result) == 0
    assert 1.0 <= time.monotonic() - started < 1.5


async def test_refused_connection_is_down_with_reason_refused(deps: ProbeDeps) -> None:
    dsn = f"postgresql://u:p@127.0.0.1:{free_port()}/d"
    result = await database.probe(settings(target(dsn)), deps=deps)
    assert result.reasons == ("refused",)
    assert "voicedrive_db_connect_duration_seconds" not in names(result)
    failure = [s.labels for s in result.samples if s.name == "voicedrive_db_failure_info"]
    assert failure == [(("database", "main"), ("reason", "refused"))]


async def test_unresolvable_host_is_down_with_reason_dns(deps: ProbeDeps) -> None:
    result = await database.probe(
        settings(target("postgresql://u:p@no-such-host.invalid:5432/d")), deps=deps
    )
    assert result.reasons == ("dns",)


async def test_missing_password_variable_is_reason_other_naming_the_variable(
    deps: ProbeDeps, logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXPORTER_UNSET_PW", raising=False)
    yaml = target("postgresql://u@127.0.0.1:1/d", ", password: '${EXPORTER_UNSET_PW}'")
    result = await database.probe(settings(yaml), deps=deps)
    assert result.reasons == ("other",)
    assert "environment variable EXPORTER_UNSET_PW is not set" in logs.text


async def test_database_that_comes_up_later_is_up_on_the_next_run(
    postgres: ThrowawayPostgres, deps: ProbeDeps
) -> None:
    # A proxy port that refuses at first, then forwards to the real server: "down, then up".
    port = free_port()
    dsn = postgres.dsn.replace(f":{postgres.port}/", f":{port}/")
    cfg = settings(target(dsn))
    assert (await database.probe(cfg, deps=deps)).reasons == ("refused",)

    server = await asyncio.start_server(forwarder(postgres.port), "127.0.0.1", port)
    try:
        assert (await database.probe(cfg, deps=deps)).success
    finally:
        server.close()
