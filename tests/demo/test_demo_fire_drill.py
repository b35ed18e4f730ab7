"""``voicedrive-demo`` with no arguments (= ``make demo``): the whole stack, the short drill with
compressed time, exit 0, nothing left running. One run; the tests below read its output."""

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from demo_helpers import alive

# The drill takes about 3.5 minutes here (bench/RESULTS.md, "Demo drill"); its own waits are
# bounded too, so this only catches a launcher that hangs.
BOUND = 420.0
# The first test pays for the whole run (the fixture); the others only read its output.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(BOUND + 120)]


@dataclass
class DrillRun:
    """The launcher's exit status, its stdout, and how long it took."""

    status: int
    out: str
    seconds: float
    descendants: list[psutil.Process]
    dir: Path


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> DrillRun:
    """``voicedrive-demo`` on free ports, run to its end (bounded)."""
    tmp = tmp_path_factory.mktemp("drill")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicedrive_demo", "--dir", str(tmp / "demo"), "--base-port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=(tmp / "stderr").open("wb"),
        text=True,
        start_new_session=True,
    )
    descendants: list[psutil.Process] = []
    try:
        # Children appear within the first seconds; remember them to check they are gone.
        for _ in range(100):
            descendants = psutil.Process(proc.pid).children(recursive=True)
            if len(descendants) >= 6:
                break
            time.sleep(0.2)
        out, _ = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        steps = re.findall(r"^== Drill: .*$", out, re.MULTILINE)
        pytest.fail(
            f"the demo did not end within {BOUND:g}s; last step started: "
            f"{steps[-1] if steps else '(none)'}\n{out[-3000:]}",
            pytrace=False,
        )
    return DrillRun(proc.returncode, out, time.monotonic() - started, descendants, tmp / "demo")


def _failed_steps(out: str) -> str:
    return "\n".join(line for line in out.splitlines() if "FAILED" in line) or out[-3000:]


def test_make_demo_runs_the_drill_and_exits_zero_when_every_step_passed(drill: DrillRun) -> None:
    assert drill.status == 0, _failed_steps(drill.out)
    assert re.search(r"drill passed in \d+s", drill.out)


def test_the_whole_run_takes_under_five_minutes(drill: DrillRun) -> None:
    assert drill.seconds < 300, f"took {drill.seconds:.0f}s"


def test_banner_says_the_time_is_compressed_and_by_how_much(drill: DrillRun) -> None:
    assert "Time is compressed: alerting x10" in drill.out
    assert "escalation after 1m instead of 30m" in drill.out


def test_every_step_passed_naming_each_level(drill: DrillRun) -> None:
    for step in ("level 2", "level 3", "level 4", "incident record", "daily check"):
        assert re.search(rf"^\s+ok\s+{step}", drill.out, re.MULTILINE), _failed_steps(drill.out)


def test_unacknowledged_level_2_escalates_on_the_level_3_channel(drill: DrillRun) -> None:
    assert re.search(r"\[sms\] firing L3 INC-\S+: .*【エスカレーション Level 2→3】", drill.out)
    assert re.search(r"acknowledged INC-\S+ as 'drill'", drill.out)
    assert re.search(r"INC-\S+ is still level 2 \(acknowledged\): no escalation", drill.out)


def test_level_4_reaches_the_phone_stand_in(drill: DrillRun) -> None:
    assert re.search(r"\[phone\] firing L4 INC-\S+", drill.out)
    assert "no level 3 page during the level 4 outage" in drill.out


def test_fault_to_page_times_are_printed_per_level(drill: DrillRun) -> None:
    for label in ("level 2 api", "level 2 notifications", "level 3 database", "level 4"):
        assert re.search(rf"^\s+{label}: \d+\.\ds$", drill.out, re.MULTILINE), label


def test_record_and_daily_check_are_printed_in_markdown(drill: DrillRun) -> None:
    assert "# Phase 2緊急事態対応記録" in drill.out
    assert "Level 2 → Level 3（未応答のためエスカレーション）" in drill.out
    assert "# Phase 2 日次チェック" in drill.out
    assert "結果: すべて正常" in drill.out


def test_nothing_the_demo_started_is_left_running(drill: DrillRun) -> None:
    assert len(drill.descendants) >= 6
    deadline = time.monotonic() + 10
    left = alive(drill.descendants)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = alive(left)
    assert not left, [p.pid for p in left]


def test_rules_come_from_an_overrides_file_left_for_inspection(drill: DrillRun) -> None:
    overrides = drill.dir / "rules" / "thresholds.override.yml"
    assert "VoiceDriveSystemDown" in overrides.read_text(encoding="utf-8")
    rules = drill.dir / "rules" / "generated" / "prometheus" / "rules" / "voicedrive.rules.yml"
    assert rules.is_file()
