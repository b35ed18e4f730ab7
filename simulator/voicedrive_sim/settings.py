"""The simulator's settings and the command line that fills them."""

import argparse
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from voicedrive_common.errors import ConfigError
from voicedrive_common.logs import FORMATS, LEVELS, register_secret
from voicedrive_common.secrets import Secret

TOKEN_ENV = "VOICEDRIVE_SIM_ADMIN_TOKEN"  # noqa: S105 - the name of a variable, not a token
DSN_ENV = "VOICEDRIVE_SIM_DB_DSN"


@dataclass(frozen=True, kw_only=True)
class SimSettings:
    """Everything the simulator needs to start; ports may be 0 (any free port)."""

    api_host: str = "127.0.0.1"
    api_port: int = 18080
    admin_host: str = "127.0.0.1"
    admin_port: int = 18081
    admin_token: Secret
    db_dsn: Secret | None = None
    rows_per_second: float = 2.0
    failure_ratio: float = 0.0
    write_interval: float = 1.0
    proxy_host: str | None = None
    proxy_port: int = 0
    proxy_target_host: str = "127.0.0.1"
    proxy_target_port: int = 15433

    def __post_init__(self) -> None:
        if not is_loopback(self.admin_host):
            raise ConfigError(
                "--admin.listen-address",
                f"the admin API listens on loopback only, got {self.admin_host!r}",
            )
        if not 0 <= self.failure_ratio <= 1:
            raise ConfigError("--db.failure-ratio", "must be between 0 and 1")
        if self.rows_per_second < 0:
            raise ConfigError("--db.rows-per-second", "must not be negative")
        if self.write_interval <= 0:
            raise ConfigError("write_interval", "must be positive")

    @property
    def proxy_enabled(self) -> bool:
        """Whether the database proxy runs."""
        return self.proxy_host is not None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) into its parts; the error names the flag."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(flag, f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    """The ``voicedrive-sim`` command line (see docs/contracts.md)."""
    parser = argparse.ArgumentParser(
        prog="voicedrive-sim",
        description="Stand-in VoiceDrive API with run-time fault injection.",
    )
    add = parser.add_argument
    add("--web.listen-address", dest="web", default="127.0.0.1:18080", help="API address")
    add("--admin.listen-address", dest="admin", default="127.0.0.1:18081", help="admin address")
    add("--admin.token-file", dest="token_file", help=f"admin bearer token (or env {TOKEN_ENV})")
    add("--db.dsn", dest="dsn", help=f"PostgreSQL DSN for delivery rows (or env {DSN_ENV})")
    add("--db.rows-per-second", dest="rate", type=float, default=2.0)
    add("--db.failure-ratio", dest="ratio", type=float, default=0.0)
    add("--db.write-interval", dest="interval", type=float, default=1.0, help=argparse.SUPPRESS)
    add("--db.proxy-listen-address", dest="proxy", help="database proxy address")
    add("--db.proxy-target", dest="proxy_target", help="PostgreSQL behind the proxy")
    add("--log.level", dest="log_level", default="info", choices=LEVELS)
    add("--log.format", dest="log_format", default="logfmt", choices=FORMATS)
    return parser


def settings_from_args(args: argparse.Namespace) -> SimSettings:
    """Validated settings from parsed arguments; ConfigError names the flag."""
    api_host, api_port = parse_address(args.web, "--web.listen-address")
    admin_host, admin_port = parse_address(args.admin, "--admin.listen-address")
    token = _read_token(args.token_file)
    dsn_text = args.dsn or os.environ.get(DSN_ENV)
    dsn = None
    if dsn_text:
        password = urlsplit(dsn_text).password
        if password:
            register_secret(unquote(password))
        dsn = Secret(dsn_text)
    proxy_host: str | None = None
    proxy_port, target_host, target_port = 0, "127.0.0.1", 15433
    if bool(args.proxy) != bool(args.proxy_target):
        raise ConfigError(
            "--db.proxy-listen-address",
            "give both --db.proxy-listen-address and --db.proxy-target, or neither",
        )
    if args.proxy:
        proxy_host, proxy_port = parse_address(args.proxy, "--db.proxy-listen-address")
        target_host, target_port = parse_address(args.proxy_target, "--db.proxy-target")
    return SimSettings(
        api_host=api_host,
        api_port=api_port,
        admin_host=admin_host,
        admin_port=admin_port,
        admin_token=token,
        db_dsn=dsn,
        rows_per_second=args.rate,
        failure_ratio=args.ratio,
        write_interval=args.interval,
        proxy_host=proxy_host,
        proxy_port=proxy_port,
        proxy_target_host=target_host,
        proxy_target_port=target_port,
    )


def _read_token(path: str | None) -> Secret:
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                "--admin.token-file", f"cannot read {path!r}: {exc.strerror}"
            ) from None
        source = "--admin.token-file"
    else:
        value = os.environ.get(TOKEN_ENV, "").strip()
        source = TOKEN_ENV
    if not value:
        raise ConfigError(
            source, f"an admin token is required (--admin.token-file FILE or env {TOKEN_ENV})"
        )
    if len(value) < 16:
        raise ConfigError(source, "the admin token must be at least 16 characters")
    register_secret(value)
    return Secret(value)
