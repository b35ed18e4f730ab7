"""``voicedrive-demo`` end to end: PostgreSQL, simulator and exporter start, answer, react to a
fault, and SIGTERM or the end of ``--duration`` stops every process the launcher started.

These run without the alerting half (``--no-alerting``); test_demo_alerting.py covers it.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest
from demo_helpers import Demo, alive, get, start_demo, stop_demo

from voicedrive_common.throwaway_pg import free_port
from voicedrive_demo.stack import exporter_available

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo on free ports, shared by the tests that only look at it."""
    running = start_demo(tmp_path_factory.mktemp("demo"), "--no-alerting", "--duration", "120")
    yield running
    if running.proc.poll() is None:
        stop_demo(running)


@pytest.fixture
def own_demo(tmp_path: Path) -> Iterator[Demo]:
    """A demo of the test's own, for tests that stop it."""
    running = start_demo(tmp_path, "--no-alerting", "--duration", "120")
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait(10)


def test_exporter_is_installed_so_the_demo_starts_it() -> None:
    assert exporter_available()


async def test_simulator_answers_at_the_printed_url(demo: Demo) -> None:
    status, body = await get(demo.urls["simulator API"])
    assert status == 200
    assert json.loads(body)["status"] == "ok"


async def test_admin_api_answers_with_the_token_the_demo_wrote(demo: Demo) -> None:
    status, _ = await get(demo.urls["simulator admin API"], headers=demo.auth)
    assert status == 200


def test_token_and_password_files_are_private(demo: Demo) -> None:
    for name in ("sim-admin-token", "db-password"):
        assert (demo.dir / name).stat().st_mode & 0o077 == 0


def test_banner_shows_a_fault_injection_command(demo: Demo) -> None:
    assert "curl -s -X PUT" in demo.banner
    assert demo.urls["simulator admin API"] + "/api" in demo.banner


async def test_notification_rows_reach_postgres_through_the_proxy(demo: Demo) -> None:
    address = demo.urls["database (proxy)"].removeprefix("postgresql://")
    password = (demo.dir / "db-password").read_text().strip()
    dsn = f"postgresql://voicedrive:{password}@{address}"
    count = 0
    for _ in range(50):  # bounded: 50 x 100 ms; the writer writes every second
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            count = await conn.fetchval("SELECT count(*) FROM notification_deliveries")
        except asyncpg.UndefinedTableError:
            count = 0
        finally:
            await conn.close()
        if count:
            break
        await asyncio.sleep(0.1)
    assert count > 0


async def test_exporter_serves_every_probe_with_live_values(demo: Demo) -> None:
    status, text = await get(demo.urls["exporter"])
    assert status == 200
    for probe in ("api", "notifications", "database", "backup", "host"):
        assert f'voicedrive_probe_success{{probe="{probe}"}} 1.0' in text
    assert 'voicedrive_api_up{endpoint="/health"} 1.0' in text
    assert 'voicedrive_db_up{database="voicedrive"} 1.0' in text


async def test_injected_fault_shows_in_the_exporter_within_one_interval(demo: Demo) -> None:
    fault = {"endpoint": "/health", "status": 503}
    async with aiohttp.ClientSession() as session:
        url = demo.urls["simulator admin API"] + "/api"
        async with session.put(url, json=fault, headers=demo.auth) as resp:
            assert resp.status == 200
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5 + 4  # the demo's probe interval + probe timeout
            text = ""
            while loop.time() < deadline:
                _, text = await get(demo.urls["exporter"])
                if 'voicedrive_api_up{endpoint="/health"} 0.0' in text:
                    break
                await asyncio.sleep(0.2)
            assert 'voicedrive_api_up{endpoint="/health"} 0.0' in text
        finally:
            await session.delete(demo.urls["simulator admin API"], headers=demo.auth)


def test_sigterm_stops_every_process_the_demo_started(own_demo: Demo) -> None:
    assert len(own_demo.children) >= 3  # postgres, simulator, exporter (and their children)
    assert stop_demo(own_demo) == 0
    assert alive(own_demo.children) == []


def test_ctrl_c_to_the_whole_foreground_group_stops_everything(own_demo: Demo) -> None:
    # A terminal's Ctrl-C reaches every process of the job's group, the launcher's PostgreSQL too.
    os.killpg(own_demo.proc.pid, signal.SIGINT)
    assert own_demo.proc.wait(30) == 0
    assert alive(own_demo.children) == []


def test_duration_stops_the_demo_by_itself(tmp_path: Path) -> None:
    running = start_demo(tmp_path, "--no-alerting", "--duration", "1")
    assert running.proc.wait(30) == 0
    assert alive(running.children) == []


def test_busy_port_is_refused_with_a_hint(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "voicedrive_demo",
                "--dir",
                str(tmp_path),
                "--base-port",
                "0",
                "--port",
                f"sim-api={port}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    assert f"sim-api ({port})" in result.stderr
    assert "--base-port" in result.stderr


def test_killed_launcher_leaves_no_orphans(own_demo: Demo) -> None:
    clusters = _cluster_dirs(own_demo)
    own_demo.proc.kill()  # SIGKILL: the launcher cannot clean up, the kernel must
    own_demo.proc.wait(10)
    deadline = time.monotonic() + 15
    while alive(own_demo.children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(own_demo.children) == []
    for directory in clusters:  # what the killed launcher could not delete
        shutil.rmtree(directory, ignore_errors=True)


def _cluster_dirs(demo: Demo) -> list[Path]:
    dirs = []
    for process in demo.children:
        try:
            argv = process.cmdline()
        except psutil.Error:
            continue
        if "-D" in argv and argv[argv.index("-D") + 1].endswith("/data"):
            dirs.append(Path(argv[argv.index("-D") + 1]).parent)
    return dirs


def test_drill_without_the_alerting_half_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicedrive_demo",
            "--dir",
            str(tmp_path),
            "--base-port",
            "0",
            "--no-alerting",
            "--drill",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "the drill needs" in result.stderr
