"""Finding, starting and stopping the real binaries the integration tests run.

Importable as a plain module: conftest modules are not.
"""

import shutil
import subprocess
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest

STOP_TIMEOUT_S = 10.0


def require_binary(name: str) -> str:
    """Path of a real binary; a missing one fails the test (never skips): CI must have it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; run scripts/ensure-system-packages.sh", pytrace=False
        )
    return path


def start_logged(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its stdout and stderr both written to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    log: Path,
    ready: Callable[[], bool],
    *,
    timeout_s: float,
) -> None:
    """Poll ``ready`` until it holds; fail with the log if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited early:\n{log.read_text()}", pytrace=False)
        try:
            if ready():
                return
        except (urllib.error.URLError, ConnectionError):
            # Not listening yet: the next round asks again.
            pass
        time.sleep(0.1)
    pytest.fail(f"{name} not ready after {timeout_s}s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process``; kill it if it has not exited within the stop timeout."""
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
