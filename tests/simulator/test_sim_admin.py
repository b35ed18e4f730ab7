"""The admin API: bearer token required, bad requests named and survived, faults listed."""

from pathlib import Path

import aiohttp
import pytest
from sim_helpers import TOKEN, Admin

from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import Secret
from voicedrive_sim.server import RunningSimulator
from voicedrive_sim.settings import SimSettings, build_parser, settings_from_args


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
async def test_admin_without_the_right_bearer_token_is_refused(
    sim: RunningSimulator, session: aiohttp.ClientSession, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    async with session.get(f"{sim.admin_url}/admin/faults", headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_refused_admin_request_changes_nothing(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    url = f"{sim.admin_url}/admin/faults/api"
    async with session.put(url, json={"status": 500}) as resp:
        assert resp.status == 401
    assert (await admin.faults())["api"] == {}


async def test_admin_with_the_token_lists_the_faults(admin: Admin) -> None:
    await admin.put("api", {"endpoint": "/health", "latency_seconds": 0.8})
    faults = await admin.faults()
    assert faults["api"]["/health"]["latency_seconds"] == 0.8
    assert faults["db"] == {"down": False}


async def test_delete_clears_every_fault(admin: Admin) -> None:
    await admin.put("api", {"endpoint": "*", "status": 503})
    await admin.put("notifications", {"failure_ratio": 0.5})
    faults = await admin.clear()
    assert faults["api"] == {}
    assert faults["notifications"]["failure_ratio"] == 0.0


async def test_putting_a_clear_fault_removes_the_endpoint_entry(admin: Admin) -> None:
    await admin.put("api", {"endpoint": "/health", "status": 500})
    _, faults = await admin.put("api", {"endpoint": "/health"})
    assert faults["api"] == {}


@pytest.mark.parametrize(
    ("kind", "body", "named"),
    [
        ("api", {"latency_seconds": "slow"}, "latency_seconds"),
        ("api", {"latency_seconds": -1}, "latency_seconds"),
        ("api", {"status": 42}, "status"),
        ("api", {"hang": "yes"}, "hang"),
        ("api", {"endpoint": "health"}, "endpoint"),
        ("api", {"endpoint": "/health", "down": True}, "down"),
        ("api", {"latency": 1}, "latency"),
        ("api", [1, 2], "JSON object"),
        ("db", {}, "down"),
        ("notifications", {"failure_ratio": 1.5}, "failure_ratio"),
        ("notifications", {"rows_per_second": -2}, "rows_per_second"),
    ],
)
async def test_malformed_fault_is_rejected_naming_the_field(
    admin: Admin, kind: str, body: object, named: str
) -> None:
    status, answer = await admin.put(kind, body)
    assert status == 400
    assert named in answer["error"]


async def test_body_that_is_not_json_is_rejected_and_the_simulator_keeps_running(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    url = f"{sim.admin_url}/admin/faults/api"
    async with session.put(url, data=b"{not json", headers=admin.headers) as resp:
        assert resp.status == 400
    async with session.get(f"{sim.api_url}/health") as resp:
        assert resp.status == 200


async def test_deeply_nested_body_is_a_400_saying_so(
    sim: RunningSimulator, admin: Admin, session: aiohttp.ClientSession
) -> None:
    url = f"{sim.admin_url}/admin/faults/api"
    body = b'{"endpoint": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with session.put(url, data=body, headers=admin.headers) as resp:
        assert resp.status == 400
        assert "nested too deeply" in (await resp.json())["error"]


async def test_database_fault_without_a_proxy_is_rejected(admin: Admin) -> None:
    status, answer = await admin.put("db", {"down": True})
    assert status == 400
    assert "proxy" in answer["error"]


def test_admin_listener_must_be_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        SimSettings(admin_host="0.0.0.0", admin_token=Secret(TOKEN))  # noqa: S104


def test_admin_token_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEDRIVE_SIM_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="admin token is required"):
        settings_from_args(build_parser().parse_args([]))


def test_admin_token_is_read_from_the_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = build_parser().parse_args(["--admin.token-file", str(token_file)])
    assert settings_from_args(args).admin_token.reveal() == TOKEN


def test_proxy_needs_both_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEDRIVE_SIM_ADMIN_TOKEN", TOKEN)
    args = build_parser().parse_args(["--db.proxy-listen-address", "127.0.0.1:0"])
    with pytest.raises(ConfigError, match=r"--db\.proxy-target"):
        settings_from_args(args)


def test_bad_listen_address_names_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEDRIVE_SIM_ADMIN_TOKEN", TOKEN)
    args = build_parser().parse_args(["--web.listen-address", "localhost"])
    with pytest.raises(ConfigError, match=r"--web\.listen-address"):
        settings_from_args(args)
