"""The drill's step logic: pages read from the file outboxes and the mail catcher, each step
against a real simulator and a small fake receiver (its API, and pages written to the outboxes
as a real receiver would), faults always lifted, failures naming what was waited for."""

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from voicedrive_common.secrets import Secret
from voicedrive_demo.drill import (
    Drill,
    DrillReport,
    DrillTimeouts,
    Page,
    PageWatcher,
    StepResult,
    channels_with_test_message,
    escalation_page,
    lower_level_pages,
    resolved,
    summary,
)
from voicedrive_demo.main import build_parser, wants_drill
from voicedrive_demo.timing import Timing
from voicedrive_sim.server import RunningSimulator, start_simulator
from voicedrive_sim.settings import SimSettings
from voicedrive_sim.state import FAULTS, FaultBoard

TOKEN = "drill-admin-token-0123456789"
RX_TOKEN = "drill-receiver-token"
# Escalation after 0.3 s, watch 0.3 s, timers checked every 0.05 s.
FAST_TIMING = Timing(pipeline=10, lifecycle=6000, scheduler_interval=0.05)
FAST = DrillTimeouts(page=3.0, resolved=3.0, poll=0.02, settle=0.3, slack=2.0, margin=0.05)
SHORT = DrillTimeouts(page=0.4, resolved=0.4, poll=0.02, settle=0.1, slack=0.3, margin=0.05)


def _line(channel: str, status: str, level: int, incident: str | None, text: str) -> str:
    entry = {
        "channel": channel,
        "status": status,
        "level": level,
        "incident_id": incident,
        "subject": "",
        "text": text,
    }
    return json.dumps(entry, ensure_ascii=False) + "\n"


def _mail(directory: Path, name: str, subject: str, body: str = "body", level: str = "") -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "alerts@voicedrive.example"
    if level:
        message["X-VoiceDrive-Level"] = level
    message.set_content(body)
    (directory / name).write_bytes(message.as_bytes())


@pytest.fixture
def outboxes(tmp_path: Path) -> dict[str, Path]:
    """The console, SMS and phone outbox files and the mail folder."""
    (tmp_path / "mail").mkdir()
    return {
        "console": tmp_path / "outbox.jsonl",
        "sms": tmp_path / "outbox-sms.jsonl",
        "phone": tmp_path / "outbox-phone.jsonl",
        "mail": tmp_path / "mail",
    }


@pytest.fixture
def watcher(outboxes: dict[str, Path]) -> PageWatcher:
    """A watcher on empty outboxes."""
    return PageWatcher(
        outbox=outboxes["console"],
        mail_dir=outboxes["mail"],
        channel_outboxes=[outboxes["sms"], outboxes["phone"]],
    )


# --- reading pages ---------------------------------------------------------------------------


def test_watcher_reads_pages_from_every_outbox_file(
    watcher: PageWatcher, outboxes: dict[str, Path]
) -> None:
    outboxes["console"].write_text(_line("console", "firing", 2, "INC-1", "[レベル2] a\nb"))
    outboxes["sms"].write_text(_line("sms", "firing", 3, "INC-1", "[レベル3] c"))
    pages = watcher.poll()
    assert [(p.channel, p.level, p.incident_id, p.summary) for p in pages] == [
        ("console", 2, "INC-1", "[レベル2] a"),
        ("sms", 3, "INC-1", "[レベル3] c"),
    ]
    assert watcher.poll() == []


def test_watcher_leaves_a_half_written_line_for_the_next_poll(
    watcher: PageWatcher, outboxes: dict[str, Path]
) -> None:
    line = _line("phone", "firing", 4, "INC-9", "down")
    outboxes["phone"].write_text(line[:10])
    assert watcher.poll() == []
    outboxes["phone"].write_text(line)
    assert [p.level for p in watcher.poll()] == [4]


@pytest.mark.parametrize(
    ("subject", "status", "level"),
    [
        ("[VoiceDrive][レベル3 重大] VoiceDrive API の全エンドポイントが応答しません", "firing", 3),
        ("[VoiceDrive][解決][レベル2 中] API が遅い", "resolved", 2),
        ("[VoiceDrive][Resolved][Level 4 system down] down", "resolved", 4),
    ],
)
def test_watcher_reads_level_and_status_from_mail_subjects(
    watcher: PageWatcher, outboxes: dict[str, Path], subject: str, status: str, level: int
) -> None:
    _mail(outboxes["mail"], "00001.eml", subject)
    [page] = watcher.poll()
    assert (page.channel, page.status, page.level) == ("email", status, level)
    assert watcher.poll() == []


def test_watcher_takes_the_incident_from_the_mail_body_and_the_level_header(
    watcher: PageWatcher, outboxes: dict[str, Path]
) -> None:
    body = "インシデントURL: http://127.0.0.1:9918/api/incidents/INC-20261203-ab12\n"
    _mail(outboxes["mail"], "00001.eml", "[VoiceDrive] 通知", body, level="3")
    [page] = watcher.poll()
    assert (page.incident_id, page.level) == ("INC-20261203-ab12", 3)


# --- matching pages --------------------------------------------------------------------------


def _page(
    channel: str, level: int, text: str, incident: str = "INC-1", status: str = "firing"
) -> Page:
    return Page(channel, status, level, text.splitlines()[0], incident, text)


def test_escalation_counts_only_on_the_channel_asked_for() -> None:
    pages = [
        _page("console", 3, "[レベル3] 【エスカレーション Level 2→3】x"),
        _page("sms", 3, "[レベル3] 【エスカレーション Level 2→3】x", incident="INC-2"),
    ]
    assert escalation_page(pages, "INC-1", channel="sms") is None
    assert escalation_page(pages, "INC-1", channel="console") is pages[0]


def test_a_plain_level_3_page_is_no_escalation() -> None:
    assert escalation_page([_page("sms", 3, "[レベル3] DB down")], "INC-1", channel="sms") is None


def test_lower_level_pages_ignore_escalations_tests_and_resolutions() -> None:
    plain = _page("sms", 3, "[レベル3] API down", incident="INC-3")
    pages = [
        plain,
        _page("sms", 3, "【エスカレーション Level 2→3】x"),
        _page("console", 1, "【疎通確認】"),
        _page("sms", 3, "[レベル3] API down", status="resolved"),
        _page("phone", 4, "[レベル4] down"),
    ]
    assert lower_level_pages(pages, 4) == [plain]


def test_resolved_needs_the_same_incident() -> None:
    pages = [_page("console", 2, "x", incident="INC-2", status="resolved")]
    assert resolved(pages, "INC-2")
    assert not resolved(pages, "INC-1")


def test_test_messages_are_counted_per_channel() -> None:
    pages = [_page("email", 1, "【疎通確認】"), _page("sms", 1, "[connectivity check] x")]
    assert channels_with_test_message(pages) == {"email", "sms"}


def test_summary_names_each_step_its_times_and_the_total() -> None:
    ok = StepResult("level 3: database down", ok=True, times={"level 3 database": 18.14})
    failed = StepResult("level 4: x", error="timed out after 120s waiting for a level 4 page")
    text = summary(DrillReport(steps=[ok, failed], seconds=203.6))
    assert "ok      level 3: database down" in text
    assert "level 3 database: 18.1s" in text
    assert "FAILED  level 4: x  (timed out after 120s waiting for a level 4 page)" in text
    assert "drill FAILED in 204s" in text


# --- the steps against a real simulator and a fake receiver -------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    """A real simulator with a database proxy (no database behind it is needed)."""
    settings = SimSettings(
        api_port=0, admin_port=0, admin_token=Secret(TOKEN), proxy_host="127.0.0.1"
    )
    running = await start_simulator(settings)
    yield running
    await running.stop()


@dataclass
class FakeReceiver:
    """The receiver's API as the drill uses it; pages are written by the test's scenario."""

    outboxes: dict[str, Path]
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)
    daily_ok: bool = True
    test_channels: tuple[str, ...] = ("console", "sms")
    url: str = ""

    def open(self, incident: str, component: str, level: int) -> None:
        """A new incident (as the receiver's store would have it)."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.incidents[incident] = {
            "id": incident,
            "component": component,
            "level": level,
            "status": "open",
            "opened_at": now,
        }

    def page(self, channel: str, incident: str | None, level: int, text: str, **kw: str) -> None:
        """A page on ``channel`` (console, sms, phone: outbox lines)."""
        line = _line(channel, kw.get("status", "firing"), level, incident, text)
        with self.outboxes[channel].open("a", encoding="utf-8") as out:
            out.write(line)

    def app(self) -> web.Application:
        """The fake's routes."""

        async def incident(request: web.Request) -> web.Response:
            found = self.incidents.get(request.match_info["id"])
            if found is None:
                return web.json_response({"error": "unknown"}, status=404)
            return web.json_response(found)

        async def ack(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {RX_TOKEN}":
                return web.json_response({"error": "unauthorized"}, status=401)
            incident_id = request.match_info["id"]
            self.acknowledged.append(incident_id)
            self.incidents[incident_id]["status"] = "acknowledged"
            return web.json_response(self.incidents[incident_id])

        async def listing(request: web.Request) -> web.Response:
            return web.json_response({"incidents": list(self.incidents.values())})

        async def record(request: web.Request) -> web.Response:
            return web.Response(text=f"# Phase 2緊急事態対応記録 {request.match_info['id']}")

        async def tests(request: web.Request) -> web.Response:
            for channel in self.test_channels:
                self.page(channel, None, 1, "【疎通確認】")
            return web.json_response({"enqueued": 2, "channels": ["console", "sms"]})

        async def daily(request: web.Request) -> web.Response:
            if request.query.get("format") == "markdown":
                return web.Response(text="# Phase 2 日次チェック")
            items = [{"title": "緊急連絡手段疎通確認", "ok": self.daily_ok}]
            return web.json_response({"ok": self.daily_ok, "items": items})

        async def alertmanager_alerts(request: web.Request) -> web.Response:
            inhibited = {"inhibitedBy": ["fp-system-down"]}
            return web.json_response(
                [
                    {"labels": {"alertname": "VoiceDriveDatabaseDown"}, "status": inhibited},
                    {"labels": {"alertname": "VoiceDriveSystemDown"}, "status": {}},
                ]
            )

        app = web.Application()
        app.router.add_get("/api/v2/alerts", alertmanager_alerts)
        app.router.add_get("/api/incidents", listing)
        app.router.add_get("/api/incidents/{id}", incident)
        app.router.add_post("/api/incidents/{id}/ack", ack)
        app.router.add_get("/api/incidents/{id}/record.md", record)
        app.router.add_post("/api/daily-check/test-messages", tests)
        app.router.add_get("/api/daily-check", daily)
        return app


@pytest.fixture
async def receiver(outboxes: dict[str, Path]) -> AsyncIterator[FakeReceiver]:
    """A fake receiver on a free loopback port."""
    fake = FakeReceiver(outboxes)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    yield fake
    await runner.cleanup()


def _drill(
    sim: RunningSimulator,
    receiver: FakeReceiver,
    watcher: PageWatcher,
    out: io.StringIO,
    timeouts: DrillTimeouts = FAST,
) -> Drill:
    return Drill(
        alertmanager_url=receiver.url,  # the fake serves Alertmanager's /api/v2/alerts too
        admin_url=f"{sim.admin_url}/admin/faults",
        admin_token=TOKEN,
        receiver_url=receiver.url,
        receiver_token=RX_TOKEN,
        watcher=watcher,
        out=out,
        timing=FAST_TIMING,
        timeouts=timeouts,
    )


async def _until(condition: Callable[[], object]) -> None:
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the drill did not get there")


def _api_faulted(board: FaultBoard) -> bool:
    return "/api/status" in board.api


async def _level2_scenario(
    sim: RunningSimulator, rx: FakeReceiver, *, escalate_acknowledged: bool = False
) -> None:
    """API and notification incidents page; the unacknowledged one escalates; lifts resolve."""
    board = sim.app[FAULTS]
    await _until(lambda: _api_faulted(board) and board.failure_ratio == 0.3)
    rx.open("INC-A", "api", 2)
    rx.page("console", "INC-A", 2, "[レベル2] API endpoint down")
    rx.open("INC-N", "notifications", 2)
    rx.page("console", "INC-N", 2, "[レベル2] notifications low")
    await asyncio.sleep(FAST_TIMING.escalate_after)
    rx.incidents["INC-A"]["level"] = 3
    rx.page("sms", "INC-A", 3, "[レベル3] 【エスカレーション Level 2→3】API endpoint down")
    if escalate_acknowledged:
        rx.incidents["INC-N"]["level"] = 3
        rx.page("sms", "INC-N", 3, "[レベル3] 【エスカレーション Level 2→3】notifications")
    await _until(lambda: not _api_faulted(board))
    rx.page("console", "INC-A", 3, "[レベル3] 解決", status="resolved")
    await _until(lambda: board.failure_ratio != 0.3)
    rx.page("console", "INC-N", 2, "[レベル2] 解決", status="resolved")


async def test_level_2_step_acknowledges_one_incident_and_sees_the_other_escalate(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    scenario = asyncio.create_task(_level2_scenario(sim, receiver))
    drill = _drill(sim, receiver, watcher, io.StringIO())
    result = StepResult("level 2")
    async with drill.session():
        await drill.step_level2(result)
    await scenario
    assert receiver.acknowledged == ["INC-N"]
    assert set(result.times) == {"level 2 api", "level 2 notifications", "escalation to level 3"}
    assert drill.report.incidents == {"escalated": "INC-A", "acknowledged": "INC-N"}


async def test_level_2_step_fails_when_the_acknowledged_incident_escalates(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    scenario = asyncio.create_task(_level2_scenario(sim, receiver, escalate_acknowledged=True))
    drill = _drill(sim, receiver, watcher, io.StringIO())
    report = await drill.run_steps(["level2"])
    scenario.cancel()
    [step] = report.steps
    assert not step.ok
    assert step.error == "acknowledged INC-N escalated (level 3)"


async def test_step_without_a_page_fails_naming_what_it_waited_for_and_lifts_the_faults(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    out = io.StringIO()
    report = await _drill(sim, receiver, watcher, out, SHORT).run_steps(["level3"])
    [step] = report.steps
    assert step.error == "timed out after 0.4s waiting for a level 3 page of the database incident"
    assert "FAILED: timed out after 0.4s" in out.getvalue()
    board = sim.app[FAULTS]
    assert not board.db_down
    assert board.api == {}


async def test_level_4_step_fails_when_a_level_3_page_arrives_during_the_outage(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    async def outage() -> None:
        board = sim.app[FAULTS]
        await _until(lambda: board.db_down and "*" in board.api)
        receiver.open("INC-4", "api", 4)
        receiver.page("phone", "INC-4", 4, "[レベル4] system down")
        receiver.open("INC-D", "database", 3)
        receiver.page("sms", "INC-D", 3, "[レベル3] database down")

    scenario = asyncio.create_task(outage())
    report = await _drill(sim, receiver, watcher, io.StringIO()).run_steps(["level4"])
    await scenario
    [step] = report.steps
    assert not step.ok
    assert step.error == "pages below level 4 during the outage: [sms] L3 [レベル3] database down"
    assert step.times["level 4"] < FAST.page


async def test_level_4_step_passes_with_the_phone_page_alone(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    async def outage() -> None:
        board = sim.app[FAULTS]
        await _until(lambda: board.db_down and "*" in board.api)
        receiver.open("INC-4", "api", 4)
        receiver.page("phone", "INC-4", 4, "[レベル4] system down")
        await _until(lambda: not board.db_down)
        receiver.page("phone", "INC-4", 4, "[レベル4] 解決", status="resolved")

    scenario = asyncio.create_task(outage())
    out = io.StringIO()
    report = await _drill(sim, receiver, watcher, out).run_steps(["level4"])
    await scenario
    assert report.ok, report.steps
    assert "inhibited in Alertmanager: VoiceDriveDatabaseDown" in report.steps[0].notes
    assert "Alertmanager holds back as inhibited: VoiceDriveDatabaseDown" in out.getvalue()


async def test_daily_check_step_waits_for_a_test_message_on_every_channel(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    receiver.test_channels = ("console",)  # the sms test message never arrives
    report = await _drill(sim, receiver, watcher, io.StringIO(), SHORT).run_steps(["daily"])
    [step] = report.steps
    assert step.error == "timed out after 0.4s waiting for a test message on every channel"


async def test_daily_check_step_fails_naming_the_item_that_is_not_ok(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    receiver.daily_ok = False
    out = io.StringIO()
    report = await _drill(sim, receiver, watcher, out).run_steps(["daily"])
    [step] = report.steps
    assert step.error == "daily check items not ok: 緊急連絡手段疎通確認"
    assert "# Phase 2 日次チェック" in out.getvalue()


async def test_record_step_prints_the_escalated_incidents_record(
    sim: RunningSimulator, receiver: FakeReceiver, watcher: PageWatcher
) -> None:
    receiver.open("INC-A", "api", 3)
    out = io.StringIO()
    drill = _drill(sim, receiver, watcher, out)
    drill.report.incidents["escalated"] = "INC-A"
    report = await drill.run_steps(["record"])
    assert report.ok
    assert "# Phase 2緊急事態対応記録 INC-A" in out.getvalue()


@pytest.mark.parametrize(
    ("argv", "drill"),
    [
        ([], True),
        (["--keep-running"], True),
        (["--no-drill"], False),
        (["--no-alerting"], False),
        (["--no-alerting", "--drill"], True),
    ],
)
def test_the_drill_runs_unless_asked_not_to_or_nothing_could_page(
    argv: list[str], drill: bool
) -> None:
    assert wants_drill(build_parser().parse_args(argv)) is drill
