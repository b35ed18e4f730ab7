"""Fixtures shared by every test package: real PostgreSQL, real binaries, a fake clock."""

from collections.abc import Iterator

import pytest

from binaries import require_binary
from voicedrive_common.clock import FakeClock
from voicedrive_common.throwaway_pg import ThrowawayPostgres

__all__ = ["require_binary"]


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
