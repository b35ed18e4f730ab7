"""CLI subcommands: schedule check, incidents ack/resolve/record/export, daily-check."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rx_helpers import alert, harness, make_config, payload

from voicedrive_common.clock import FakeClock
from voicedrive_receiver.main import main
from voicedrive_receiver.store import open_sqlite_store

ROOT = Path(__file__).resolve().parents[3]
PHASE2 = ROOT / "alertmanager" / "schedule.phase2.yml"
EXAMPLE = ROOT / "alertmanager" / "receiver.example.yml"


def cli_config(tmp_path: Path) -> Path:
    """A config the real channel registry accepts (console only), on the test's SQLite file."""
    path = tmp_path / "receiver.yml"
    path.write_text(
        f"""
server: {{auth: none}}
store: {{sqlite: {{path: {tmp_path / "receiver.db"}}}}}
contacts:
  {{operator: {{}}, hotline: {{}}, tech_lead: {{}}, infra_engineer: {{}}, medical_ops: {{}}}}
teams: {{voicedrive: {{systems: [voicedrive], members: [operator]}}}}
channels: {{console: {{type: console}}}}
fanout: {{targets: [{{level: 1, channel: console, to: [operator]}}]}}
lifecycle: {{schedule_file: {PHASE2}}}
""",
        encoding="utf-8",
    )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicedrive_receiver.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_schedule_check_lists_the_phase2_gaps_one_per_line() -> None:
    result = run("schedule", "check", "--config.file", str(PHASE2))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2025-09-01 (月) 12:00-13:00",
        "2025-09-01 (月) 17:00-18:00",
        "2025-09-02 (火) 08:00-09:00",
        "2025-09-02 (火) 12:00-13:00",
        "2025-09-03 (水) 12:00-13:00",
    ]
    assert "5 uncovered interval(s)" in result.stderr


def test_schedule_check_strict_exits_non_zero_on_gaps() -> None:
    assert run("schedule", "check", "--config.file", str(PHASE2), "--strict").returncode == 1


def test_schedule_check_strict_passes_a_range_without_gaps() -> None:
    result = run(
        "schedule",
        "check",
        "--config.file",
        str(PHASE2),
        "--strict",
        "--from",
        "2025-09-04",
        "--to",
        "2025-09-05",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_schedule_check_reads_the_schedule_of_a_receiver_config() -> None:
    result = run("schedule", "check", "--config.file", str(EXAMPLE), "--lang", "en")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "2025-09-01 (Mon) 12:00-13:00"


def test_schedule_check_reports_a_bad_file_with_its_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "fallback: {contacts: [hotline]}\n"
        "shifts: [{date: 2025-09-01, start: 18:00, end: '20:00', team: a, contacts: [x]}]\n",
        encoding="utf-8",
    )
    result = run("schedule", "check", "--config.file", str(bad))
    assert result.returncode == 2
    assert "shifts[0].start" in result.stderr


async def test_incidents_list_and_show_print_control_characters_as_visible_escapes(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = cli_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    forged = alert()
    forged["annotations"]["summary"] = "遅い\x1b[2K\r\nlevel=info msg=ok\u202e"
    async with harness(make_config(tmp_path), store, clock) as h:
        incident_id = (await h.ingest(payload(forged))).incident_id
    cfg = ["--config.file", str(config_file)]
    assert await asyncio.to_thread(main, ["incidents", "list", *cfg]) == 0
    listed = capsys.readouterr().out
    assert listed.endswith("遅い\\x1b[2K\\r\\nlevel=info msg=ok\\u202e\n")
    assert await asyncio.to_thread(main, ["incidents", "show", incident_id, *cfg]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown
    assert "\u202e" not in shown
    assert json.loads(shown)["summary"] == forged["annotations"]["summary"]


async def test_incidents_export_prints_control_characters_as_visible_escapes(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = cli_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    forged = alert()
    forged["annotations"]["summary"] = "遅い\x1b[2K\u202e\n- 状態: 完了"
    async with harness(make_config(tmp_path), store, clock) as h:
        incident_id = (await h.ingest(payload(forged))).incident_id
    cfg = ["--config.file", str(config_file)]
    assert await asyncio.to_thread(main, ["incidents", "export", incident_id, *cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "- 概要: 遅い\\x1b[2K\\u202e" in lines
    # The summary's second line stays indented under its item, not a record line of its own.
    assert "  - 状態: 完了" in lines
    assert "- 状態: 完了" not in lines


async def test_export_to_a_missing_directory_is_a_one_line_error_and_exit_1(
    tmp_path: Path, clock: FakeClock
) -> None:
    config_file = cli_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(make_config(tmp_path), store, clock) as h:
        incident_id = (await h.ingest(payload(alert()))).incident_id
    target = tmp_path / "missing" / "x.md"
    args = ["incidents", "export", incident_id, "--output", str(target)]
    result = await asyncio.to_thread(run, *args, "--config.file", str(config_file))
    assert result.returncode == 1
    assert result.stderr == f"error: cannot write {target}: No such file or directory\n"


async def test_incidents_ack_record_and_export_work_on_the_store(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = cli_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(make_config(tmp_path), store, clock) as h:
        incident_id = (await h.ingest(payload(alert()))).incident_id
    cfg = ["--config.file", str(config_file)]

    # The CLI runs its own event loop, so it goes to a thread.
    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, list(args))

    assert await cli("incidents", "ack", incident_id, "--by", "yamada", *cfg) == 0
    assert "acknowledged by yamada" in capsys.readouterr().out
    assert await cli("incidents", "record", incident_id, "--root-cause", "設定誤り", *cfg) == 0
    assert await cli("incidents", "resolve", incident_id, *cfg) == 0
    capsys.readouterr()
    assert await cli("incidents", "show", incident_id, *cfg) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["acknowledged_by"]) == ("resolved", "yamada")
    assert shown["record"] == {"root_cause": "設定誤り"}
    assert await cli("incidents", "export", incident_id, *cfg) == 0
    record = capsys.readouterr().out
    assert record.startswith("# Phase 2緊急事態対応記録")
    assert "- 対応者: yamada" in record
    assert "- 根本原因: 設定誤り" in record
    assert await cli("incidents", "list", *cfg) == 0
    assert incident_id in capsys.readouterr().out


async def test_incidents_ack_of_an_unknown_id_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = cli_config(tmp_path)

    code = await asyncio.to_thread(
        main, ["incidents", "ack", "INC-none", "--by", "x", "--config.file", str(config_file)]
    )
    assert code == 1
    assert "no incident 'INC-none'" in capsys.readouterr().err


def test_daily_check_prints_the_markdown_checklist(tmp_path: Path) -> None:
    config_file = cli_config(tmp_path)
    result = run("daily-check", "--config.file", str(config_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Phase 2 日次チェック ")
    assert "- [ ] バックアップデータ最新性確認" in result.stdout
    strict = run("daily-check", "--config.file", str(config_file), "--strict")
    assert strict.returncode == 1


def test_schedule_check_for_an_unknown_team_says_so_and_exits_2() -> None:
    result = run("schedule", "check", "--config.file", str(PHASE2), "--team", "nope")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown team 'nope' (known: ")


def test_incidents_list_accepts_the_monitoring_status(tmp_path: Path) -> None:
    config_file = cli_config(tmp_path)
    result = run("incidents", "list", "--status", "monitoring", "--config.file", str(config_file))
    assert (result.returncode, result.stderr) == (0, "")
