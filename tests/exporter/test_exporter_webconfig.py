"""The exporter-toolkit web config: validation, bcrypt basic auth with a cache, TLS."""

import base64
import ssl
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from aiohttp.typedefs import Handler

from voicedrive_common.confload import parse_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_common.webconfig import BasicAuth, load_web_config, parse_web_config

HASH = bcrypt.hashpw(b"s3cret:pass", bcrypt.gensalt(rounds=4)).decode()

INVALID = [
    ("tls_server_config: {key_file: k}", "tls_server_config.cert_file: is required"),
    (
        "tls_server_config: {cert_file: c, key_file: k, client_auth_type: Sometimes}",
        "tls_server_config.client_auth_type: must be one of NoClientCert, VerifyClientCertIfGiven,"
        " RequireAndVerifyClientCert; got 'Sometimes'",
    ),
    (
        "tls_server_config: {cert_file: c, key_file: k,"
        " client_auth_type: RequireAndVerifyClientCert}",
        "tls_server_config.client_ca_file: is required with RequireAndVerifyClientCert",
    ),
    (
        "tls_server_config: {cert_file: c, key_file: k, min_version: TLS13, max_version: TLS12}",
        "tls_server_config.min_version: must not be above max_version",
    ),
    (
        "tls_server_config: {cert_file: c, key_file: k, cipher_suites: [X]}",
        "tls_server_config.cipher_suites: is not supported by this server",
    ),
    (
        "basic_auth_users: {alice: plaintext}",
        "basic_auth_users.alice: expected a bcrypt hash (starting with $2y$, $2b$ or $2a$)",
    ),
    (
        "http_server_config: {headers: {X-Frame-Options: 1}}",
        "http_server_config.headers.X-Frame-Options: expected a string, got int",
    ),
    ("basic_auth: {}", "<root>: unknown key 'basic_auth'"),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_web_config_is_rejected_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_web_config(parse_yaml(text))
    assert str(caught.value) == message


def _text(body: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        del request
        return web.Response(text=body)

    return handler


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class CountingCheck:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        return bool(bcrypt.checkpw(password, hashed))


async def test_right_password_is_accepted_and_wrong_one_refused() -> None:
    auth = BasicAuth({"alice": HASH.encode()})
    assert await auth.check(_basic("alice", "s3cret:pass"))
    assert not await auth.check(_basic("alice", "wrong"))
    assert not await auth.check(_basic("bob", "s3cret:pass"))
    assert not await auth.check(None)
    assert not await auth.check("Bearer abc")
    assert not await auth.check("Basic !!!notbase64")


async def test_a_verified_password_costs_one_bcrypt_for_many_scrapes() -> None:
    check = CountingCheck()
    auth = BasicAuth({"alice": HASH.encode()}, checkpw=check)
    for _ in range(5):
        assert await auth.check(_basic("alice", "s3cret:pass"))
    assert check.calls == 1


async def test_wrong_passwords_are_never_cached() -> None:
    check = CountingCheck()
    auth = BasicAuth({"alice": HASH.encode()}, checkpw=check)
    assert await auth.check(_basic("alice", "s3cret:pass"))
    for _ in range(3):
        assert not await auth.check(_basic("alice", "guess"))
    assert check.calls == 4


async def test_unknown_user_still_costs_a_bcrypt() -> None:
    check = CountingCheck()
    auth = BasicAuth({"alice": HASH.encode()}, checkpw=check)
    assert not await auth.check(_basic("mallory", "x"))
    assert check.calls == 1


async def _serve(app: web.Application, ssl_context: ssl.SSLContext | None) -> web.AppRunner:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    return runner


async def test_middleware_answers_401_without_credentials_and_adds_headers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        f"basic_auth_users:\n  alice: '{HASH}'\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    )
    cfg = load_web_config(path)
    app = web.Application(middlewares=[cfg.middleware()])
    app.router.add_get("/metrics", _text("ok"))
    runner = await _serve(app, cfg.ssl_context())
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"] == 'Basic realm="voicedrive"'
            headers = {"Authorization": _basic("alice", "s3cret:pass")}
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 200
                assert await resp.text() == "ok"
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await runner.cleanup()


async def test_tls_server_config_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {tmp_path}/cert.pem\n  key_file: {tmp_path}/key.pem\n"
    )
    cfg = load_web_config(tmp_path / "web.yml")
    app = web.Application(middlewares=[cfg.middleware()])
    app.router.add_get("/", _text("tls"))
    runner = await _serve(app, cfg.ssl_context())
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    try:
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
            async with session.get(url, ssl=client_ctx) as resp:
                assert await resp.text() == "tls"
    finally:
        await runner.cleanup()


async def test_client_certificate_is_required_with_require_and_verify(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.private_key_pem.write_to_path(tmp_path / "key.pem")
    server.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    (tmp_path / "web.yml").write_text(
        "tls_server_config:\n"
        f"  cert_file: {tmp_path}/cert.pem\n  key_file: {tmp_path}/key.pem\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tmp_path}/ca.pem\n"
    )
    cfg = load_web_config(tmp_path / "web.yml")
    app = web.Application()
    app.router.add_get("/", _text("mtls"))
    runner = await _serve(app, cfg.ssl_context())
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
    without = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ca.issue_cert("client@example.test").configure_cert(with_cert)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url, ssl=without) as resp:
                    await resp.read()
            async with session.get(url, ssl=with_cert) as resp:
                assert await resp.text() == "mtls"
    finally:
        await runner.cleanup()


def test_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text(
        "tls_server_config: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}\n"
    )
    cfg = load_web_config(tmp_path / "web.yml")
    with pytest.raises(ConfigError, match=r"^tls_server_config.cert_file: cannot load certificate"):
        cfg.ssl_context()
