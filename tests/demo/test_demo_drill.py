"""The drill: pages read from the file outbox and the mail catcher, steps run against a real
simulator, faults always lifted, records printed from the receiver's incident API."""

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiohttp import web

from voicedrive_common.secrets import Secret
from voicedrive_demo.drill import (
    STEPS,
    Drill,
    DrillStep,
    DrillTimeouts,
    Fault,
    PageWatcher,
    StepResult,
    print_records,
    summary,
)
from voicedrive_sim.server import RunningSimulator, start_simulator
from voicedrive_sim.settings import SimSettings
from voicedrive_sim.state import FAULTS

TOKEN = "drill-admin-token-0123456789"
FAST = DrillTimeouts(page=5.0, resolved=5.0, poll=0.02)
# For steps that must time out: short, yet far longer than the fake receiver needs to page.
SHORT = DrillTimeouts(page=0.5, resolved=0.5, poll=0.02)


def _console_line(status: str, level: int, incident: str = "INC-1") -> str:
    entry = {"channel": "console", "status": status, "level": level, "incident_id": incident}
    entry["text"] = f"[レベル{level}] summary line\n  details"
    return json.dumps(entry, ensure_ascii=False) + "\n"


def _mail(directory: Path, name: str, subject: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "alerts@voicedrive.example"
    message.set_content("body")
    (directory / name).write_bytes(message.as_bytes())


@pytest.fixture
def watcher(tmp_path: Path) -> PageWatcher:
    """A watcher on an empty outbox and mail folder."""
    (tmp_path / "mail").mkdir()
    return PageWatcher(outbox=tmp_path / "outbox.jsonl", mail_dir=tmp_path / "mail")


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    """A real simulator with a database proxy (no database behind it is needed)."""
    settings = SimSettings(
        api_port=0, admin_port=0, admin_token=Secret(TOKEN), proxy_host="127.0.0.1"
    )
    running = await start_simulator(settings)
    yield running
    await running.stop()


def _drill(
    sim: RunningSimulator, watcher: PageWatcher, out: io.StringIO, timeouts: DrillTimeouts = FAST
) -> Drill:
    return Drill(
        admin_url=f"{sim.admin_url}/admin/faults",
        admin_token=TOKEN,
        watcher=watcher,
        out=out,
        timeouts=timeouts,
    )


def test_watcher_reads_console_pages_from_the_outbox(watcher: PageWatcher, tmp_path: Path) -> None:
    (tmp_path / "outbox.jsonl").write_text(_console_line("firing", 3), encoding="utf-8")
    [page] = watcher.poll()
    assert (page.channel, page.status, page.level, page.incident_id) == (
        "console",
        "firing",
        3,
        "INC-1",
    )
    assert page.summary == "[レベル3] summary line"


def test_watcher_leaves_a_half_written_line_for_the_next_poll(
    watcher: PageWatcher, tmp_path: Path
) -> None:
    line = _console_line("firing", 2)
    outbox = tmp_path / "outbox.jsonl"
    outbox.write_text(line[:10], encoding="utf-8")
    assert watcher.poll() == []
    outbox.write_text(line, encoding="utf-8")
    assert [p.level for p in watcher.poll()] == [2]
    assert watcher.poll() == []


@pytest.mark.parametrize(
    ("subject", "status", "level"),
    [
        ("[VoiceDrive][レベル3 重大] VoiceDrive API の全エンドポイントが応答しません", "firing", 3),
        ("[VoiceDrive][解決][レベル2 中] API が遅い", "resolved", 2),
        ("[VoiceDrive][Resolved][Level 4 system down] down", "resolved", 4),
    ],
)
def test_watcher_reads_level_and_status_from_mail_subjects(
    watcher: PageWatcher, tmp_path: Path, subject: str, status: str, level: int
) -> None:
    _mail(tmp_path / "mail", "00001.eml", subject)
    [page] = watcher.poll()
    assert (page.channel, page.status, page.level) == ("email", status, level)
    assert watcher.poll() == []


async def _fake_receiver(sim: RunningSimulator, outbox: Path, level: int) -> None:
    """Page when the fault is on the board, resolve when it is lifted (bounded)."""
    board = sim.app[FAULTS]
    for _ in range(250):
        if board.api or board.db_down:
            break
        await asyncio.sleep(0.02)
    with outbox.open("a", encoding="utf-8") as out:
        out.write(_console_line("firing", level))
    for _ in range(250):
        if not (board.api or board.db_down):
            break
        await asyncio.sleep(0.02)
    with outbox.open("a", encoding="utf-8") as out:
        out.write(_console_line("resolved", level))


async def test_step_injects_waits_for_its_page_lifts_and_sees_the_resolution(
    sim: RunningSimulator, watcher: PageWatcher, tmp_path: Path
) -> None:
    step = STEPS[1]  # level 3: the database down
    receiver = asyncio.create_task(_fake_receiver(sim, tmp_path / "outbox.jsonl", step.level))
    out = io.StringIO()
    result = await _drill(sim, watcher, out).run_step(step)
    await receiver
    assert result.ok
    assert [p.status for p in result.pages] == ["firing", "resolved"]
    assert "paged after" in out.getvalue()


async def test_page_of_another_level_does_not_complete_the_step(
    sim: RunningSimulator, watcher: PageWatcher, tmp_path: Path
) -> None:
    step = DrillStep(level=4, title="t", faults=(Fault("db", {"down": True}),))
    receiver = asyncio.create_task(_fake_receiver(sim, tmp_path / "outbox.jsonl", 3))
    result = await _drill(sim, watcher, io.StringIO(), SHORT).run_step(step)
    receiver.cancel()
    assert not result.ok
    assert result.seconds_to_page is None


async def test_faults_are_lifted_when_no_page_arrives(
    sim: RunningSimulator, watcher: PageWatcher
) -> None:
    out = io.StringIO()
    result = await _drill(sim, watcher, out, SHORT).run_step(STEPS[2])
    assert not result.ok
    board = sim.app[FAULTS]
    assert board.api == {}
    assert not board.db_down
    assert "FAILED: no level 4 page in time" in out.getvalue()


def test_drill_covers_levels_two_to_four_in_order() -> None:
    assert [step.level for step in STEPS] == [2, 3, 4]


def test_summary_names_each_level_with_its_time_to_page() -> None:
    ok = StepResult(STEPS[0], seconds_to_page=42.4, resolved=True)
    failed = StepResult(STEPS[1])
    text = summary([ok, failed])
    assert re.search(r"level 2\s+ok\s+42s\s+part of the functions stopped", text)
    assert re.search(r"level 3\s+FAILED\s+-\s", text)


async def test_records_are_printed_oldest_first_with_the_receiver_token() -> None:
    async def incidents(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer rx-token":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"incidents": [{"id": "INC-2"}, {"id": "INC-1"}]})

    async def record(request: web.Request) -> web.Response:
        return web.Response(text=f"# 障害記録 {request.match_info['id']}")

    app = web.Application()
    app.router.add_get("/api/incidents", incidents)
    app.router.add_get("/api/incidents/{id}/record.md", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        out = io.StringIO()
        count = await print_records(receiver_url=f"http://{host}:{port}", token="rx-token", out=out)
    finally:
        await runner.cleanup()
    assert count == 2
    text = out.getvalue()
    assert text.index("# 障害記録 INC-1") < text.index("# 障害記録 INC-2")


async def test_every_page_of_the_batch_that_completes_a_step_is_shown(
    sim: RunningSimulator, watcher: PageWatcher, tmp_path: Path
) -> None:
    step = STEPS[1]

    async def console_and_mail_together() -> None:
        board = sim.app[FAULTS]
        for _ in range(250):
            if board.db_down:
                break
            await asyncio.sleep(0.02)
        _mail(tmp_path / "mail", "00001.eml", "[VoiceDrive][レベル3 重大] DB down")
        with (tmp_path / "outbox.jsonl").open("a", encoding="utf-8") as out:
            out.write(_console_line("firing", 3))

    paging = asyncio.create_task(console_and_mail_together())
    out = io.StringIO()
    result = await _drill(sim, watcher, out, SHORT).run_step(step)
    await paging
    assert result.seconds_to_page is not None
    assert sorted(p.channel for p in result.pages if p.status == "firing") == ["console", "email"]
    assert "[email] firing L3: [VoiceDrive][レベル3 重大] DB down" in out.getvalue()
