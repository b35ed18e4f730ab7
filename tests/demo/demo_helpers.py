"""``voicedrive-demo`` as a process in tests: start it, read its banner, find its children."""

import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil

_NAMES = (
    "simulator API",
    "simulator admin API",
    "exporter",
    r"database \(proxy\)",
    "Prometheus",
    "Alertmanager",
    "receiver",
    "mail catcher",
)
_URL = re.compile(rf"^\s+({'|'.join(_NAMES)})\s+(\S+)")


@dataclass
class Demo:
    """A running launcher, the URLs from its banner, and its descendants at start."""

    proc: "subprocess.Popen[bytes]"
    urls: dict[str, str]
    banner: str
    children: list[psutil.Process]
    dir: Path

    @property
    def token(self) -> str:
        """The simulator admin token the demo wrote."""
        return (self.dir / "sim-admin-token").read_text().strip()

    @property
    def auth(self) -> dict[str, str]:
        """Admin API headers."""
        return {"Authorization": f"Bearer {self.token}"}


def start_demo(tmp_path: Path, *args: str) -> Demo:
    """Start the demo on free ports under ``tmp_path`` and wait (bounded) for its banner."""
    with (tmp_path / "demo.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voicedrive_demo",
                "--dir",
                str(tmp_path / "demo"),
                "--base-port",
                "0",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            bufsize=0,  # unbuffered, so select() sees every line that readline() has not read
            # Its own process group, as a shell gives a foreground job: Ctrl-C can be sent to it.
            start_new_session=True,
        )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        # The banner ends with an empty line after its "Try:" block.
        while not ("Try:\n" in lines and lines[-1] == "\n"):
            if not selector.select(max(deadline - time.monotonic(), 0.0)):
                proc.kill()
                raise AssertionError("no banner within 60 s")
            line = proc.stdout.readline()
            if not line:
                stderr = (tmp_path / "demo.stderr").read_text()
                raise AssertionError(f"demo ended before its banner:\n{stderr}")
            lines.append(line.decode())
    urls = {}
    for line in lines:
        match = _URL.match(line)
        if match:
            urls[match.group(1)] = match.group(2)
    children = psutil.Process(proc.pid).children(recursive=True)
    return Demo(proc, urls, "".join(lines), children, tmp_path / "demo")


def stop_demo(demo: Demo) -> int:
    """SIGTERM and the exit status (bounded wait)."""
    demo.proc.send_signal(signal.SIGTERM)
    return demo.proc.wait(30)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` still running (zombies count as gone)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``url``; status and body text."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(url, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL the banner printed."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
