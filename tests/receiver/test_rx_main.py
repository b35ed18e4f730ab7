"""The receiver process at start: mandatory auth, a loud warning without it, a busy port."""

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rx_process import ROOT, process_config, start_receiver

pytestmark = pytest.mark.integration

AUTH_LINE = '  auth: {bearer_token: "${RX_TOKEN}"}\n'


def write_config(tmp_path: Path, auth_line: str = AUTH_LINE) -> Path:
    text = process_config(
        store=f"sqlite: {{path: {tmp_path / 'rx.db'}}}", sink_url="http://127.0.0.1:9/", members=1
    )
    assert AUTH_LINE in text
    path = tmp_path / "receiver.yml"
    path.write_text(text.replace(AUTH_LINE, auth_line), encoding="utf-8")
    return path


def receiver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicedrive_receiver.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "RX_TOKEN": "t" * 32},
    )


def test_config_check_refuses_a_config_without_server_auth(tmp_path: Path) -> None:
    config = write_config(tmp_path, auth_line="")
    result = receiver("--config.check", "--config.file", str(config))
    assert result.returncode == 1
    assert "server.auth: is required" in result.stderr


def test_config_check_warns_when_auth_is_explicitly_none(tmp_path: Path) -> None:
    config = write_config(tmp_path, auth_line="  auth: none\n")
    result = receiver("--config.check", "--config.file", str(config))
    assert result.returncode == 0
    assert "WARNING: server.auth is 'none'" in result.stdout


async def test_receiver_with_auth_none_logs_a_loud_warning_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, auth_line="  auth: none\n")
    log = tmp_path / "rx.log"
    running = await start_receiver(config, log)
    await running.stop()
    assert "AUTHENTICATION DISABLED" in log.read_text()


async def test_busy_port_is_a_one_line_error_and_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicedrive_receiver.main",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "RX_TOKEN": "t" * 32},
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    text = out.decode()
    assert proc.returncode == 1
    assert "cannot listen" in text
    assert "Traceback" not in text
