"""Helpers for the simulator tests: settings on free ports and an admin API client."""

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp

from voicedrive_common.secrets import Secret
from voicedrive_sim.server import RunningSimulator
from voicedrive_sim.settings import SimSettings

TOKEN = "test-admin-token-0123456789"


def settings(**overrides: Any) -> SimSettings:
    """Settings on free loopback ports with the test token."""
    base = SimSettings(api_port=0, admin_port=0, admin_token=Secret(TOKEN))
    return replace(base, **overrides)


class Admin:
    """Talks to the admin API with the right token."""

    def __init__(self, sim: RunningSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.headers = {"Authorization": f"Bearer {TOKEN}"}

    async def put(self, kind: str, body: object) -> tuple[int, Any]:
        """PUT /admin/faults/<kind>; returns status and JSON."""
        url = f"{self.sim.admin_url}/admin/faults/{kind}"
        async with self.session.put(url, json=body, headers=self.headers) as resp:
            return resp.status, await resp.json()

    async def clear(self) -> Any:
        """DELETE /admin/faults."""
        url = f"{self.sim.admin_url}/admin/faults"
        async with self.session.delete(url, headers=self.headers) as resp:
            assert resp.status == 200
            return await resp.json()

    async def faults(self) -> Any:
        """GET /admin/faults."""
        url = f"{self.sim.admin_url}/admin/faults"
        async with self.session.get(url, headers=self.headers) as resp:
            assert resp.status == 200
            return await resp.json()


# start_sim(**settings_overrides) -> a running simulator, stopped after the test.
StartSim = Callable[..., Awaitable[RunningSimulator]]
