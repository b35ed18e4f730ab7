"""The whole exporter on loopback: scrapes, readiness, reload, signals, secrets, promtool."""

import asyncio
import base64
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import PIPE
from urllib.parse import quote

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from exporter_helpers import LogCapture, RawServe, Serve, forwarder, never_answer

from binaries import require_binary
from voicedrive_common.throwaway_pg import ThrowawayPostgres, free_port
from voicedrive_common.webconfig import load_web_config
from voicedrive_exporter.config import parse_config
from voicedrive_exporter.exporter import Exporter, create_app
from voicedrive_exporter.metrics import SPECS

pytestmark = pytest.mark.integration
SECRET_PASSWORD = "Xq7@#:/%&=!pw"
CONTRACT = [
    "voicedrive_api_up",
    "voicedrive_api_probe_duration_seconds",
    "voicedrive_api_request_duration_seconds_bucket",
    "voicedrive_api_tls_cert_expiry_timestamp_seconds",
    "voicedrive_db_up",
    "voicedrive_db_connect_duration_seconds",
    "voicedrive_db_query_duration_seconds",
    "voicedrive_notification_success_ratio",
    "voicedrive_notifications_in_window",
    "voicedrive_backup_age_seconds",
    "voicedrive_host_cpu_usage_ratio",
    "voicedrive_host_memory_usage_ratio",
    "voicedrive_probe_success",
    "voicedrive_probe_last_run_timestamp_seconds",
    "voicedrive_probe_errors_total",
    "voicedrive_probe_skipped_total",
    "voicedrive_exporter_build_info",
]


def api_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        del request
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_get("/api/status", ok)
    return app


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def wait_for(base: str, pattern: str, seconds: float = 5.0) -> str:
    """Scrape until ``pattern`` (a regex) matches; bounded by ``seconds``."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        text = await scrape(base)
        if re.search(pattern, text, re.MULTILINE):
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{pattern!r} not seen within {seconds}s; last scrape:\n{text}")


async def start_exporter(serve: Serve, yaml: str, path: Path | None = None) -> tuple[str, Exporter]:
    exporter = Exporter(parse_config(yaml), config_path=path)
    base = await serve(create_app(exporter))
    return base, exporter


def full_config(api: str, hang_port: int, dsn: str, backups: Path, extra_api: str = "") -> str:
    return f"""
api:
  interval: 1s
  timeout: 800ms
  endpoints:
    - {{url: '{api}/health'}}
    - {{url: '{api}/api/status'}}
    - {{url: 'http://127.0.0.1:{hang_port}/health', name: hang}}{extra_api}
database:
  interval: 1s
  timeout: 900ms
  targets: [{{name: main, dsn: '{dsn}', connect_timeout: 500ms, query_timeout: 300ms}}]
notifications:
  interval: 1s
  timeout: 900ms
  min_volume: 0
  sql:
    dsn: '{dsn}'
    connect_timeout: 500ms
    query_timeout: 300ms
    query: "SELECT 9 AS delivered, 1 AS failed WHERE $1::float8 > 0"
backup: {{interval: 1s, timeout: 500ms, path_glob: '{backups}/*.dump'}}
host: {{interval: 1s, timeout: 500ms, cpu_sample_window: 100ms}}
"""


@pytest.fixture
async def tls_api(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    runner = web.AppRunner(api_app(), shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}", tmp_path / "ca.pem"
    await runner.cleanup()


async def test_live_scrape_has_every_contract_metric_and_passes_promtool(
    serve: Serve,
    raw_server: RawServe,
    postgres: ThrowawayPostgres,
    tmp_path: Path,
    tls_api: tuple[str, Path],
) -> None:
    promtool = require_binary("promtool")
    api = await serve(api_app())
    hang = await raw_server(never_answer)
    (tmp_path / "db.dump").write_bytes(b"dump")
    tls_url, ca = tls_api
    extra = f"\n    - {{url: '{tls_url}/health', name: tls}}"
    config = full_config(api, hang, postgres.dsn, tmp_path, extra_api=extra).replace(
        "  endpoints:", f"  tls: {{ca_file: '{ca}'}}\n  endpoints:", 1
    )
    base, _ = await start_exporter(serve, config)
    text = await wait_for(base, r'^voicedrive_probe_success\{probe="api"\} 0.0$')
    text = await wait_for(base, r"^voicedrive_host_cpu_usage_ratio ")
    missing = [name for name in CONTRACT if not re.search(rf"^{name}[{{ ]", text, re.MULTILINE)]
    assert missing == []
    assert 'voicedrive_api_up{endpoint="hang"} 0.0' in text
    assert 'voicedrive_api_up{endpoint="/health"} 1.0' in text
    assert 'voicedrive_api_failure_info{endpoint="hang",reason="timeout"} 1.0' in text
    lint = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(lint.communicate(text.encode()), 30)
    assert (lint.returncode, out.decode()) == (0, "")


async def test_metrics_answers_in_under_100ms_while_a_target_hangs(
    serve: Serve, raw_server: RawServe
) -> None:
    hang = await raw_server(never_answer)
    yaml = (
        f"api: {{interval: 10s, timeout: 5s, endpoints: [{{url: 'http://127.0.0.1:{hang}/h'}}]}}\n"
        "host: {enabled: false}\n"
    )
    base, exporter = await start_exporter(serve, yaml)
    async with aiohttp.ClientSession() as session:
        await asyncio.sleep(0.1)  # the API probe is now inside its 5 s hang
        assert not exporter.store.snapshot.ready
        timings = []
        for _ in range(10):
            started = time.monotonic()
            async with session.get(f"{base}/metrics") as resp:
                await resp.read()
                assert resp.status == 200
            timings.append(time.monotonic() - started)
    assert max(timings) < 0.1


async def test_ready_turns_200_after_the_first_round(serve: Serve, raw_server: RawServe) -> None:
    hang = await raw_server(never_answer)
    yaml = (
        f"api: {{interval: 2s, timeout: 600ms, endpoints: [{{url: 'http://127.0.0.1:{hang}/h'}}]}}\n"
        "host: {enabled: false}\n"
    )
    base, _ = await start_exporter(serve, yaml)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/-/ready") as resp:
            assert resp.status == 503
        async with session.get(f"{base}/-/healthy") as resp:
            assert resp.status == 200
        for _ in range(40):  # bounded: 2 s
            async with session.get(f"{base}/-/ready") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert resp.status == 200
        async with session.get(f"{base}/") as resp:
            assert "VoiceDrive exporter" in await resp.text()


async def test_database_down_at_start_recovers_without_restart(
    serve: Serve, postgres: ThrowawayPostgres
) -> None:
    port = free_port()
    dsn = postgres.dsn.replace(f":{postgres.port}/", f":{port}/")
    yaml = (
        "database: {interval: 300ms, timeout: 250ms, targets: [{name: main, "
        f"dsn: '{dsn}', connect_timeout: 150ms, query_timeout: 100ms}}]}}\n"
        "host: {enabled: false}\n"
    )
    base, _ = await start_exporter(serve, yaml)
    await wait_for(base, r'^voicedrive_db_up\{database="main"\} 0.0$')

    server = await asyncio.start_server(forwarder(postgres.port), "127.0.0.1", port)
    try:
        text = await wait_for(base, r'^voicedrive_db_up\{database="main"\} 1.0$')
        assert "voicedrive_db_failure_info" not in text
        assert 'voicedrive_probe_errors_total{probe="database",reason="refused"}' in text
    finally:
        server.close()


async def test_password_never_appears_in_logs_or_metrics(
    serve: Serve, postgres: ThrowawayPostgres, logs: LogCapture
) -> None:
    postgres.create_role("exporter_live", "different")
    wrong_dsn = postgres.dsn_for("exporter_live", SECRET_PASSWORD)
    yaml = (
        "database: {interval: 300ms, timeout: 250ms, targets: [{name: main, "
        f"dsn: '{wrong_dsn}', connect_timeout: 200ms, query_timeout: 50ms}}]}}\n"
        "host: {enabled: false}\n"
    )
    base, _ = await start_exporter(serve, yaml)
    text = await wait_for(base, r'reason="auth"')

    for form in (SECRET_PASSWORD, quote(SECRET_PASSWORD, safe=""), "Xq7"):
        assert form not in text
        assert form not in logs.text
    assert "reason=auth" in logs.text


async def test_reload_with_an_invalid_file_keeps_the_old_config(
    serve: Serve, tmp_path: Path, logs: LogCapture
) -> None:
    path = tmp_path / "exporter.yml"
    good = f"backup: {{interval: 5s, path_glob: '{tmp_path}/*.dump'}}\nhost: {{enabled: false}}\n"
    path.write_text(good)
    base, exporter = await start_exporter(serve, good, path)
    path.write_text("backup: {path_glob: 7}\n")
    assert not await exporter.reload()
    assert exporter.config == parse_config(good)
    assert exporter.store.snapshot.probes == ("backup",)
    text = await scrape(base)
    assert "voicedrive_exporter_config_last_reload_successful 0.0" in text
    assert "backup.path_glob: expected a string, got int" in logs.text


async def test_reload_with_a_valid_file_switches_probes(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    first = f"backup: {{interval: 5s, path_glob: '{tmp_path}/*.dump'}}\nhost: {{enabled: false}}\n"
    path.write_text(first)
    base, exporter = await start_exporter(serve, first, path)
    await wait_for(base, r'^voicedrive_probe_success\{probe="backup"\}')
    path.write_text("host: {interval: 5s, cpu_sample_window: 50ms}\n")
    assert await exporter.reload()
    text = await wait_for(base, r'^voicedrive_probe_success\{probe="host"\} 1.0$')
    assert 'probe="backup"' not in text
    assert "voicedrive_exporter_config_last_reload_successful 1.0" in text


async def test_binary_reloads_on_sighup_and_stops_cleanly_on_sigterm_mid_probe(
    tmp_path: Path, raw_server: RawServe
) -> None:
    hang = await raw_server(never_answer)
    path = tmp_path / "exporter.yml"
    path.write_text(
        f"api: {{interval: 20s, timeout: 15s, endpoints: [{{url: 'http://127.0.0.1:{hang}/h'}}]}}\n"
    )
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicedrive_exporter.main",
        "--config.file",
        str(path),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        stderr=PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stderr = proc.stderr
    assert stderr is not None

    async def line_with(text: str) -> str:
        for _ in range(50):  # bounded: the first lines of output
            raw: bytes = await asyncio.wait_for(stderr.readline(), 10)
            line = raw.decode()
            if text in line:
                return line
        raise AssertionError(f"{text!r} not logged")

    try:
        await line_with("msg=listening")
        path.write_text("backup: {path_glob: /x, unknown_key: 1}\n")
        proc.send_signal(signal.SIGHUP)
        assert "unknown key 'unknown_key'" in await line_with("config reload failed")
        # The API probe is inside its 15 s hang: SIGTERM must not wait for it.
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert time.monotonic() - started < 3
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_exposition_only_uses_declared_metric_names() -> None:
    declared = {f"{n}_total" if s.kind == "counter" else n for n, s in SPECS.items()}
    assert {name.removesuffix("_bucket") for name in CONTRACT} <= declared


async def test_reload_drops_histograms_of_removed_endpoints(serve: Serve, tmp_path: Path) -> None:
    api = await serve(api_app())
    path = tmp_path / "exporter.yml"
    first = f"api: {{interval: 5s, endpoints: [{{url: '{api}/health', name: old}}]}}\n"
    path.write_text(first)
    base, exporter = await start_exporter(serve, first, path)
    await wait_for(base, r'^voicedrive_api_request_duration_seconds_count\{endpoint="old"\}')
    path.write_text(f"api: {{interval: 5s, endpoints: [{{url: '{api}/health', name: new}}]}}\n")
    assert await exporter.reload()
    text = await wait_for(base, r'^voicedrive_api_request_duration_seconds_count\{endpoint="new"\}')
    assert 'endpoint="old"' not in text


async def test_web_config_basic_auth_protects_metrics(serve: Serve, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    exporter = Exporter(parse_config("host: {enabled: false}"))
    base = await serve(create_app(exporter, load_web_config(tmp_path / "web.yml")))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics") as resp:
            assert resp.status == 401
        token = base64.b64encode(b"prometheus:scrape-pw").decode()
        async with session.get(f"{base}/metrics", headers={"Authorization": f"Basic {token}"}) as r:
            assert r.status == 200
            assert "voicedrive_exporter_build_info" in await r.text()
