"""``voicedrive-sim`` as a process: starts, serves, stops cleanly on SIGTERM and SIGINT."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from sim_helpers import TOKEN

from voicedrive_common.throwaway_pg import free_port

pytestmark = pytest.mark.integration


def _start(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, VOICEDRIVE_SIM_ADMIN_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicedrive_sim",
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--admin.listen-address",
            f"127.0.0.1:{free_port()}",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"simulator did not answer: {proc.communicate(timeout=5)}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_simulator_cleanly(signum: int) -> None:
    proc, _ = _start()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_logs_never_show_the_admin_token() -> None:
    proc, _ = _start("--log.level", "debug")
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert b"simulator started" in err
    assert TOKEN.encode() not in out + err


def test_missing_token_exits_with_a_message_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOICEDRIVE_SIM_ADMIN_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "voicedrive_sim"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "VOICEDRIVE_SIM_ADMIN_TOKEN" in result.stderr
