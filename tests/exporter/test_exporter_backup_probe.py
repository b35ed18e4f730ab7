"""Backup freshness: age of the newest file matching the glob, on a pinned clock."""

import os
from pathlib import Path

import pytest

from voicedrive_common.clock import FakeClock
from voicedrive_exporter.config import BackupSettings
from voicedrive_exporter.probes import backup
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult


def values(result: ProbeResult) -> dict[str, float]:
    return {s.name: s.value for s in result.samples}


def touch(path: Path, mtime: float, size: int = 10) -> None:
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


@pytest.fixture
def pinned(deps: ProbeDeps, clock: FakeClock) -> ProbeDeps:
    return ProbeDeps(session=deps.session, clock=clock, system=deps.system)


async def test_age_is_that_of_the_newest_matching_file(
    tmp_path: Path, pinned: ProbeDeps, clock: FakeClock
) -> None:
    now = clock.now().timestamp()
    touch(tmp_path / "a.dump", now - 7200, size=5)
    touch(tmp_path / "b.dump", now - 600, size=42)
    touch(tmp_path / "c.log", now - 1)
    result = await backup.probe(BackupSettings(path_glob=f"{tmp_path}/*.dump"), deps=pinned)
    assert result.success
    assert values(result) == {
        "voicedrive_backup_age_seconds": 600,
        "voicedrive_backup_size_bytes": 42,
        "voicedrive_backup_files": 2,
    }


async def test_double_star_searches_subdirectories(
    tmp_path: Path, pinned: ProbeDeps, clock: FakeClock
) -> None:
    (tmp_path / "2025" / "09").mkdir(parents=True)
    touch(tmp_path / "2025" / "09" / "db.dump", clock.now().timestamp() - 30)
    result = await backup.probe(BackupSettings(path_glob=f"{tmp_path}/**/*.dump"), deps=pinned)
    assert values(result)["voicedrive_backup_age_seconds"] == 30


async def test_no_matching_file_fails_without_an_age(tmp_path: Path, pinned: ProbeDeps) -> None:
    (tmp_path / "dir.dump").mkdir()
    result = await backup.probe(BackupSettings(path_glob=f"{tmp_path}/*.dump"), deps=pinned)
    assert not result.success
    assert result.reasons == ("no_file",)
    assert values(result) == {"voicedrive_backup_files": 0}
