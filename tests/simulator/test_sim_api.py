"""The API stand-in answers like the real service, and every API fault changes that answer."""

import asyncio
import json

import aiohttp
import pytest
from sim_helpers import Admin, StartSim

from voicedrive_common.throwaway_pg import free_port
from voicedrive_sim.server import RunningSimulator


async def test_health_answers_ok_json(
    sim: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{sim.api_url}/health") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


async def test_status_reports_version_and_components(
    sim: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{sim.api_url}/api/status") as resp:
        body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "ok"
    assert body["version"]
    assert body["components"]["database"] == "ok"


async def test_latency_fault_delays_the_answer(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "/health", "latency_seconds": 0.4})
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.get(f"{sim.api_url}/health") as resp:
        assert resp.status == 200
    assert loop.time() - started >= 0.4


async def test_status_fault_answers_with_that_status(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "/api/status", "status": 503})
    async with session.get(f"{sim.api_url}/api/status") as resp:
        assert resp.status == 503
        assert (await resp.json())["status"] != "ok"


async def test_corrupt_fault_sends_a_body_that_is_not_json(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "/health", "corrupt": True})
    async with session.get(f"{sim.api_url}/health") as resp:
        assert resp.status == 200
        body = await resp.read()
    with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error proves corruption
        json.loads(body)


async def test_hang_fault_accepts_the_connection_and_never_answers(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "/health", "hang": True})
    host, port = sim.api_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /health HTTP/1.1\r\nHost: sim\r\n\r\n")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)
    writer.close()


async def test_lifting_a_hang_fault_releases_the_waiting_request(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "/health", "hang": True})
    pending = asyncio.create_task(session.get(f"{sim.api_url}/health"))
    await asyncio.sleep(0.2)  # the request must be parked in the hang before the fault lifts
    assert not pending.done()
    await admin.clear()
    resp = await asyncio.wait_for(pending, 5)
    assert resp.status == 200
    resp.release()


async def test_fault_on_one_endpoint_leaves_the_other_alone(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "/health", "status": 500})
    async with session.get(f"{sim.api_url}/api/status") as resp:
        assert resp.status == 200


async def test_fault_on_star_applies_to_every_endpoint(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "*", "status": 502})
    for path in ("/health", "/api/status"):
        async with session.get(f"{sim.api_url}{path}") as resp:
            assert resp.status == 502


async def test_endpoint_fault_takes_precedence_over_star(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    await admin.put("api", {"endpoint": "*", "status": 502})
    await admin.put("api", {"endpoint": "/health", "status": 429})
    async with session.get(f"{sim.api_url}/health") as resp:
        assert resp.status == 429


async def test_down_fault_refuses_connections(sim: RunningSimulator, admin: Admin) -> None:
    host, port = sim.api_url.removeprefix("http://").split(":")
    status, _ = await admin.put("api", {"down": True})
    assert status == 200
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, int(port))


async def test_down_fault_cuts_kept_alive_connections(sim: RunningSimulator, admin: Admin) -> None:
    async with aiohttp.ClientSession() as keepalive:
        async with keepalive.get(f"{sim.api_url}/health") as resp:
            assert resp.status == 200
        await admin.put("api", {"down": True})
        with pytest.raises(aiohttp.ClientConnectionError):
            async with keepalive.get(f"{sim.api_url}/health") as resp:
                await resp.read()


async def test_clearing_down_reopens_the_api_on_the_same_port(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    url = sim.api_url
    await admin.put("api", {"down": True})
    await admin.clear()
    async with session.get(f"{url}/health") as resp:
        assert resp.status == 200


async def test_database_fault_shows_in_status_components_only(
    start_sim: StartSim, session: aiohttp.ClientSession
) -> None:
    sim = await start_sim(proxy_host="127.0.0.1", proxy_port=0, proxy_target_port=free_port())
    admin = Admin(sim, session)
    await admin.put("db", {"down": True})
    async with session.get(f"{sim.api_url}/api/status") as resp:
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["components"]["database"] == "unreachable"
