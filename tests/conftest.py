"""Fixtures shared by every test package: real PostgreSQL, real binaries, a fake clock."""

import shutil
from collections.abc import Iterator

import pytest

from voicedrive_common.clock import FakeClock
from voicedrive_common.throwaway_pg import ThrowawayPostgres


def require_binary(name: str) -> str:
    """Path of a real binary; a missing one fails the test (never skips): CI must have it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; run scripts/ensure-system-packages.sh", pytrace=False
        )
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    """One real PostgreSQL cluster for the whole test session (tests create their own databases)."""
    cluster = ThrowawayPostgres()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def clock() -> FakeClock:
    """A clock pinned at 2025-09-01T00:00:00Z that moves only when told."""
    return FakeClock()
