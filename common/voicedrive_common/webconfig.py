"""``--web.config.file`` in the Prometheus exporter-toolkit format: TLS and bcrypt basic auth.

Usage::

    web = load_web_config(path)          # ConfigError naming the key on bad input
    app = web.Application(middlewares=[web.middleware()])
    web.TCPSite(runner, host, port, ssl_context=web.ssl_context())

Supported keys: ``tls_server_config`` (``cert_file``, ``key_file``, ``client_auth_type``,
``client_ca_file``, ``min_version``, ``max_version``), ``http_server_config`` (``headers``;
``http2`` is accepted and ignored because aiohttp serves HTTP/1.1 only) and ``basic_auth_users``
(user: bcrypt hash). Other toolkit keys (cipher suites, curves, allowed SANs) are rejected by
name rather than silently ignored.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import bcrypt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from voicedrive_common.confload import Node, load_yaml
from voicedrive_common.errors import ConfigError

CLIENT_AUTH_TYPES = ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
TLS_VERSIONS = {
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_UNSUPPORTED_TLS_KEYS = (
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
    "cert",
    "key",
)
# Checked when the user is unknown so that a wrong name costs as much as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"voicedrive-unknown-user", bcrypt.gensalt(rounds=10))


@dataclass(frozen=True)
class TLSServerConfig:
    """The ``tls_server_config`` section."""

    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebConfig:
    """A parsed web config; an empty one means plain HTTP without authentication."""

    tls: TLSServerConfig | None = None
    basic_auth_users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server SSLContext for the TLS section, or None for plain HTTP."""
        if self.tls is None:
            return None
        tls = self.tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "tls_server_config.cert_file", f"cannot load certificate and key: {exc}"
            ) from None
        if tls.client_auth_type != "NoClientCert":
            ctx.verify_mode = (
                ssl.CERT_REQUIRED
                if tls.client_auth_type == "RequireAndVerifyClientCert"
                else ssl.CERT_OPTIONAL
            )
            try:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    "tls_server_config.client_ca_file", f"cannot load CA file: {exc}"
                ) from None
        return ctx

    def middleware(self, *, checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw) -> Middleware:
        """An aiohttp middleware enforcing basic auth (when users are set) and extra headers."""
        auth = BasicAuth(self.basic_auth_users, checkpw=checkpw) if self.basic_auth_users else None
        headers = dict(self.headers)

        @web.middleware
        async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if auth is not None and not await auth.check(request.headers.get("Authorization")):
                response: web.StreamResponse = web.Response(
                    status=401,
                    text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="voicedrive"'},
                )
            else:
                response = await handler(request)
            response.headers.update(headers)
            return response

        return _middleware


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes, caching successful checks.

    A scrape every few seconds must not cost a bcrypt (~50 ms of CPU) each time, so a verified
    (user, password) pair is remembered as an HMAC under a per-process key; the plain password is
    never kept. Only successes are cached, so guessing still costs a bcrypt per attempt.
    """

    def __init__(
        self,
        users: Mapping[str, bytes],
        *,
        checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw,
        cache_size: int = 64,
    ) -> None:
        self._users = dict(users)
        self._checkpw = checkpw
        self._key = os.urandom(32)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size

    async def check(self, header: str | None) -> bool:
        """Whether the Authorization header names a configured user with the right password."""
        parsed = _parse_basic(header)
        if parsed is None:
            return False
        user, password = parsed
        digest = hmac.new(self._key, user + b"\0" + password, hashlib.sha256).digest()
        name = user.decode("utf-8", "replace")
        cached = self._cache.get(name)
        if cached is not None and hmac.compare_digest(cached, digest):
            self._cache.move_to_end(name)
            return True
        hashed = self._users.get(name)
        ok = await asyncio.to_thread(self._safe_check, password, hashed or _DUMMY_HASH)
        if ok and hashed is not None:
            self._cache[name] = digest
            self._cache.move_to_end(name)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return True
        return False

    def _safe_check(self, password: bytes, hashed: bytes) -> bool:
        try:
            return self._checkpw(password, hashed)
        except ValueError:
            return False


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; ConfigError names the file and key."""
    return parse_web_config(load_yaml(path))


def parse_web_config(root: Node) -> WebConfig:
    """Validate an already parsed web config."""
    tls = _tls(root.node("tls_server_config")) if root.has("tls_server_config") else None
    http = root.node("http_server_config")
    http.flag("http2", True)
    headers_node = http.node("headers")
    headers = {key: headers_node.text(key) for key in headers_node.keys()}  # noqa: SIM118 (Node, not dict)
    headers_node.done()
    http.done()
    users_node = root.node("basic_auth_users")
    users: dict[str, bytes] = {}
    for user in users_node.keys():  # noqa: SIM118 (Node, not dict)
        hashed = users_node.text(user)
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise users_node.error(
                user, "expected a bcrypt hash (starting with $2y$, $2b$ or $2a$)"
            )
        users[user] = hashed.encode("ascii", "replace")
    users_node.done()
    root.done()
    return WebConfig(
        tls=tls,
        basic_auth_users=MappingProxyType(users),
        headers=MappingProxyType(headers),
    )


def _tls(node: Node) -> TLSServerConfig:
    for key in _UNSUPPORTED_TLS_KEYS:
        if node.has(key):
            raise node.error(key, "is not supported by this server")
    versions = tuple(TLS_VERSIONS)
    cfg = TLSServerConfig(
        cert_file=node.text("cert_file"),
        key_file=node.text("key_file"),
        client_auth_type=node.text("client_auth_type", "NoClientCert", choices=CLIENT_AUTH_TYPES),
        client_ca_file=node.text("client_ca_file", None),
        min_version=node.text("min_version", "TLS12", choices=versions),
        max_version=node.text("max_version", "TLS13", choices=versions),
    )
    node.done()
    if cfg.client_auth_type != "NoClientCert" and cfg.client_ca_file is None:
        raise node.error("client_ca_file", f"is required with {cfg.client_auth_type}")
    if TLS_VERSIONS[cfg.min_version] > TLS_VERSIONS[cfg.max_version]:
        raise node.error("min_version", "must not be above max_version")
    return cfg
