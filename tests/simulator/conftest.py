"""A real simulator on 127.0.0.1 port 0 for each test, and a client for its admin API."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sim_helpers import Admin, StartSim, settings

from voicedrive_sim.server import RunningSimulator, start_simulator


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulators with setting overrides; all are stopped after the test."""
    running: list[RunningSimulator] = []

    async def start(**overrides: Any) -> RunningSimulator:
        sim = await start_simulator(settings(**overrides))
        running.append(sim)
        return sim

    yield start
    for sim in running:
        await sim.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that does not keep connections alive between requests."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client


@pytest.fixture
async def sim(start_sim: StartSim) -> RunningSimulator:
    """A simulator without database parts."""
    result: RunningSimulator = await start_sim()
    return result


@pytest.fixture
def admin(sim: RunningSimulator, session: aiohttp.ClientSession) -> Admin:
    """Admin client of ``sim``."""
    return Admin(sim, session)
