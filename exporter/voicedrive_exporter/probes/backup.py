"""Backup probe (P9): age of the newest file matching the configured glob."""

import asyncio
import glob
import logging
import os

from voicedrive_exporter.config import BackupSettings
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult, sample

log = logging.getLogger("voicedrive_exporter.probes.backup")


def _newest(pattern: str) -> tuple[int, float, int] | None:
    """(number of files, newest mtime, its size), or None when nothing matches."""
    best: tuple[float, int] | None = None
    count = 0
    for path in glob.iglob(pattern, recursive=True):
        try:
            st = os.stat(path)
        except OSError:
            continue  # removed between listing and stat: a rotation in progress
        if not os.path.isfile(path):
            continue
        count += 1
        if best is None or st.st_mtime > best[0]:
            best = (st.st_mtime, st.st_size)
    return None if best is None else (count, best[0], best[1])


async def probe(settings: BackupSettings, *, deps: ProbeDeps) -> ProbeResult:
    """Stat the matching files off the event loop and report the newest one's age."""
    found = await asyncio.to_thread(_newest, settings.path_glob)
    if found is None:
        log.warning("backup probe: no file matches", extra={"path_glob": settings.path_glob})
        return ProbeResult(
            success=False, samples=(sample("voicedrive_backup_files", 0),), reasons=("no_file",)
        )
    count, mtime, size = found
    age = max(0.0, deps.clock.now().timestamp() - mtime)
    return ProbeResult(
        success=True,
        samples=(
            sample("voicedrive_backup_age_seconds", age),
            sample("voicedrive_backup_size_bytes", size),
            sample("voicedrive_backup_files", count),
        ),
    )


def failure(settings: BackupSettings, reason: str) -> ProbeResult:
    """No figures, with ``reason``."""
    del settings
    return ProbeResult(success=False, reasons=(reason,))
