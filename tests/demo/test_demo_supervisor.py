"""The launcher's supervisor, against real child processes: ready checks, failures, clean stops."""

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from voicedrive_common.throwaway_pg import free_port
from voicedrive_demo.services import Service
from voicedrive_demo.supervisor import ServiceFailed, Supervisor

PY = sys.executable


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    """A supervisor whose children are all stopped after the test."""
    sup = Supervisor(log_dir=tmp_path / "logs", stop=asyncio.Event())
    yield sup
    await sup.stop_all()


def _python(code: str, name: str = "child", **kwargs: object) -> Service:
    return Service(name=name, argv=(PY, "-c", code), **kwargs)  # type: ignore[arg-type]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_http_ready_check_waits_for_a_2xx_answer(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    port = free_port()
    service = Service(
        name="web",
        argv=(PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)),
        ready=(f"http://127.0.0.1:{port}/",),
    )
    running = await supervisor.start(service)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    assert running.process.returncode is None


async def test_service_that_exits_before_ready_fails_with_its_log(
    supervisor: Supervisor,
) -> None:
    service = _python(
        "import sys; print('boom: bad config'); sys.exit(3)",
        ready=(f"tcp://127.0.0.1:{free_port()}",),
    )
    with pytest.raises(ServiceFailed, match="status 3") as failed:
        await supervisor.start(service)
    assert "boom: bad config" in failed.value.log_tail


async def test_service_never_ready_fails_after_its_ready_timeout(
    supervisor: Supervisor,
) -> None:
    service = _python(
        "import time; time.sleep(600)",
        ready=(f"tcp://127.0.0.1:{free_port()}",),
        ready_timeout=0.5,
    )
    with pytest.raises(ServiceFailed, match=r"not ready after 0\.5s"):
        await supervisor.start(service)


async def test_stop_kills_a_child_that_ignores_sigterm(supervisor: Supervisor) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    running = await supervisor.start(_python(code, stop_timeout=0.5))
    await asyncio.sleep(0.3)  # let the child install its handler before we signal it
    await asyncio.wait_for(supervisor.stop_all(), 10)
    assert _gone(running.pid)


async def test_stop_reaches_what_a_child_forked(supervisor: Supervisor, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time, pathlib\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    await supervisor.start(_python(code))
    for _ in range(100):  # bounded: 100 x 50 ms
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.05)
    grandchild = int(pid_file.read_text())
    await supervisor.stop_all()
    for _ in range(100):
        if _gone(grandchild):
            break
        await asyncio.sleep(0.05)
    assert _gone(grandchild)


async def test_stop_goes_in_reverse_start_order(supervisor: Supervisor) -> None:
    first = await supervisor.start(_python("import time; time.sleep(600)", name="first"))
    second = await supervisor.start(_python("import time; time.sleep(600)", name="second"))
    await supervisor.stop_all()
    assert second.process.returncode is not None
    assert first.process.returncode is not None
    assert supervisor.running == []


async def test_watch_reports_a_service_that_exits(supervisor: Supervisor) -> None:
    await supervisor.start(_python("import time; time.sleep(0.3); print('crashed')", name="flaky"))
    with pytest.raises(ServiceFailed, match="flaky: exited unexpectedly") as failed:
        await asyncio.wait_for(supervisor.watch(duration=30), 10)
    assert "crashed" in failed.value.log_tail


async def test_watch_returns_after_the_duration(supervisor: Supervisor) -> None:
    running = await supervisor.start(_python("import time; time.sleep(600)"))
    await asyncio.wait_for(supervisor.watch(duration=0.2), 5)
    assert running.process.returncode is None


async def test_stop_request_ends_watch(tmp_path: Path) -> None:
    stop = asyncio.Event()
    sup = Supervisor(log_dir=tmp_path, stop=stop)
    try:
        await sup.start(_python("import time; time.sleep(600)"))
        asyncio.get_running_loop().call_later(0.1, stop.set)
        await asyncio.wait_for(sup.watch(duration=None), 5)
    finally:
        await sup.stop_all()


async def test_stop_request_interrupts_waiting_for_ready(tmp_path: Path) -> None:
    stop = asyncio.Event()
    sup = Supervisor(log_dir=tmp_path, stop=stop)
    service = _python("import time; time.sleep(600)", ready=(f"tcp://127.0.0.1:{free_port()}",))
    try:
        asyncio.get_running_loop().call_later(0.2, stop.set)
        await asyncio.wait_for(sup.start(service), 5)
    finally:
        await sup.stop_all()


async def test_unstartable_command_fails_naming_it(supervisor: Supervisor) -> None:
    service = Service(name="ghost", argv=("/nonexistent/voicedrive-ghost",))
    with pytest.raises(ServiceFailed, match="voicedrive-ghost"):
        await supervisor.start(service)
