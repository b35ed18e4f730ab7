"""Fixtures of the receiver tests."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rx_helpers import Harness, harness, make_config

from voicedrive_common.clock import FakeClock
from voicedrive_receiver.store import open_sqlite_store


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    """The receiver on a fresh SQLite file with recording channels."""
    config = make_config(tmp_path)
    store = await open_sqlite_store(str(tmp_path / "receiver.db"))
    async with harness(config, store, clock) as h:
        yield h
