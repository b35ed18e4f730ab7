"""A reload (SIGHUP) re-reads the web config too: basic auth, headers and TLS; a broken one
keeps the previous web config, logs file and key, and sets the reload gauge to 0."""

import asyncio
import base64
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import PIPE

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from exporter_helpers import LogCapture

from voicedrive_common.webconfig import load_web_config
from voicedrive_exporter.config import parse_config
from voicedrive_exporter.exporter import Exporter, create_app
from voicedrive_exporter.listener import Listener

CONFIG = "host: {enabled: false}\n"
GAUGE = "voicedrive_exporter_config_last_reload_successful"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def users_config(path: Path, **users: str) -> Path:
    lines = [
        f"  {user}: '{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}'"
        for user, pw in users.items()
    ]
    path.write_text("basic_auth_users:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


async def status(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


async def gauge(
    url: str, headers: dict[str, str] | None = None, client: ssl.SSLContext | None = None
) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, ssl=client or True) as resp,
    ):
        text = await resp.text()
    (line,) = [line for line in text.splitlines() if line.startswith(GAUGE)]
    return line.split()[-1]


@pytest.mark.integration
async def test_sighup_rereads_the_web_config_and_keeps_the_old_one_when_broken(
    tmp_path: Path,
) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(CONFIG, encoding="utf-8")
    web_config = users_config(tmp_path / "web.yml", alice="alice-pw")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicedrive_exporter.main",
        "--config.file",
        str(config),
        "--web.config.file",
        str(web_config),
        "--web.listen-address",
        "127.0.0.1:0",
        stderr=PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stderr = proc.stderr
    assert stderr is not None

    async def line_with(text: str) -> str:
        for _ in range(50):  # bounded: the next lines of output
            raw: bytes = await asyncio.wait_for(stderr.readline(), 10)
            if text in raw.decode():
                return raw.decode()
        raise AssertionError(f"{text!r} not logged")

    try:
        found = re.search(r"address=127\.0\.0\.1:(\d+)", await line_with("msg=listening"))
        assert found is not None
        metrics = f"http://127.0.0.1:{found.group(1)}/metrics"
        assert await status(metrics, basic("alice", "alice-pw")) == 200

        users_config(web_config, bob="bob-pw")
        proc.send_signal(signal.SIGHUP)
        await line_with("web config reloaded")
        assert await status(metrics, basic("alice", "alice-pw")) == 401
        assert await gauge(metrics, basic("bob", "bob-pw")) == "1.0"

        web_config.write_text("basic_auth_users: {bob: not-a-hash}\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        failed = await line_with("web config reload failed")
        assert f"file={web_config}" in failed
        assert "basic_auth_users.bob: expected a bcrypt hash" in failed
        # Bob still gets in with the previous web config; the gauge says the reload failed.
        assert await gauge(metrics, basic("bob", "bob-pw")) == "0.0"
        assert await status(metrics) == 401
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class Served:
    """The exporter on 127.0.0.1 port 0 as ``main.serve`` opens it, without the signals."""

    def __init__(self, exporter: Exporter, runner: web.AppRunner, listener: Listener) -> None:
        self.exporter = exporter
        self.runner = runner
        self.listener = listener

    def url(self, scheme: str) -> str:
        return f"{scheme}://{self.listener.address}/metrics"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    web_path = tmp_path / "web.yml"
    web_path.write_text("{}\n", encoding="utf-8")
    first = load_web_config(web_path)
    exporter = Exporter(parse_config(CONFIG), web_config=first, web_config_path=web_path)
    runner = web.AppRunner(create_app(exporter), shutdown_timeout=0.1)
    await runner.setup()
    listener = Listener(runner, "127.0.0.1", 0)
    await listener.start(first.ssl_context())
    exporter.listener = listener
    try:
        yield Served(exporter, runner, listener)
    finally:
        await runner.cleanup()


class Certs:
    """A test CA issuing server certificates into files the web config names."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.directory = directory
        self.client = ssl.create_default_context()
        self.ca.configure_trust(self.client)

    def issue(self, name: str) -> str:
        cert = self.ca.issue_cert("127.0.0.1", f"{name}.test")
        cert.private_key_pem.write_to_path(self.directory / f"{name}.key")
        cert.cert_chain_pems[0].write_to_path(self.directory / f"{name}.pem")
        return (
            "tls_server_config:\n"
            f"  cert_file: {self.directory / name}.pem\n"
            f"  key_file: {self.directory / name}.key\n"
        )


async def served_names(address: str, client: ssl.SSLContext) -> list[str]:
    """The DNS names of the certificate the server presents on a new connection."""
    host, _, port = address.rpartition(":")
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, int(port), ssl=client, server_hostname=host), 5
    )
    try:
        peer = writer.get_extra_info("peercert")
    finally:
        writer.close()
    return [value for kind, value in peer["subjectAltName"] if kind == "DNS"]


async def test_reload_turns_on_tls_on_the_same_port(
    served: Served, tmp_path: Path, logs: LogCapture
) -> None:
    certs = Certs(tmp_path)
    assert await status(served.url("http")) == 200
    port = served.listener.address
    (tmp_path / "web.yml").write_text(certs.issue("first"), encoding="utf-8")
    assert await served.exporter.reload()
    assert served.listener.address == port
    assert await gauge(served.url("https"), client=certs.client) == "1.0"
    assert await served_names(served.listener.address, certs.client) == ["first.test"]
    assert "web config reloaded" in logs.text


async def test_reload_serves_a_renewed_certificate_to_new_connections(
    served: Served, tmp_path: Path
) -> None:
    certs = Certs(tmp_path)
    web_path = tmp_path / "web.yml"
    web_path.write_text(certs.issue("first"), encoding="utf-8")
    assert await served.exporter.reload()
    web_path.write_text(certs.issue("renewed"), encoding="utf-8")
    assert await served.exporter.reload()
    assert await served_names(served.listener.address, certs.client) == ["renewed.test"]


async def test_reload_with_a_missing_certificate_keeps_serving_the_old_one(
    served: Served, tmp_path: Path, logs: LogCapture
) -> None:
    certs = Certs(tmp_path)
    web_path = tmp_path / "web.yml"
    web_path.write_text(certs.issue("first"), encoding="utf-8")
    assert await served.exporter.reload()
    web_path.write_text(
        f"tls_server_config: {{cert_file: {tmp_path}/gone.pem, key_file: {tmp_path}/gone.key}}\n",
        encoding="utf-8",
    )
    assert not await served.exporter.reload()
    assert await served_names(served.listener.address, certs.client) == ["first.test"]
    assert await gauge(served.url("https"), client=certs.client) == "0.0"
    (line,) = [line for line in logs.text.splitlines() if "web config reload failed" in line]
    assert f"file={web_path}" in line
    assert "tls_server_config.cert_file: cannot load certificate and key" in line


async def test_reload_applies_new_response_headers_to_open_connections(
    served: Served, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(served.url("http")) as resp:
            assert "X-Frame-Options" not in resp.headers
        (tmp_path / "web.yml").write_text(
            "http_server_config: {headers: {X-Frame-Options: deny}}\n", encoding="utf-8"
        )
        assert await served.exporter.reload()
        async with session.get(served.url("http")) as resp:
            assert resp.headers["X-Frame-Options"] == "deny"


async def test_a_broken_exporter_config_still_lets_a_good_web_config_apply(
    tmp_path: Path, logs: LogCapture
) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text("host: {enabled: maybe}\n", encoding="utf-8")
    web_path = users_config(tmp_path / "web.yml", carol="carol-pw")
    exporter = Exporter(parse_config(CONFIG), config_path=config, web_config_path=web_path)
    assert not await exporter.reload()
    assert exporter.config == parse_config(CONFIG)
    assert set(exporter.web_config.basic_auth_users) == {"carol"}
    assert exporter.store.snapshot.reload_ok is False
    assert "config reload failed" in logs.text
