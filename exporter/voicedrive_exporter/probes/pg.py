"""Fresh PostgreSQL connections for the database and notification probes.

Shared because two probes connect; it owns the bounded failure reasons and the rule that no
DSN or password ever reaches an error text.
"""

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from voicedrive_common.errors import ConfigError
from voicedrive_common.logs import register_secret
from voicedrive_exporter.config import PgTarget

REASONS = ("timeout", "refused", "auth", "dns", "tls", "other")
log = logging.getLogger("voicedrive_exporter.pg")


class PgFailure(Exception):
    """A connection or query failed; ``reason`` is one of REASONS, ``detail`` is secret-free."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _credentials(target: PgTarget) -> tuple[str, str | None]:
    try:
        dsn = target.dsn.resolve().reveal()
        password = target.password.resolve().reveal() if target.password else None
    except ConfigError as exc:
        # The message names the key and the variable or file, never the value.
        raise PgFailure("other", str(exc)) from None
    # The DSN as a whole is registered by resolve(); its password part may show up on its own.
    embedded = urlsplit(dsn).password
    if embedded:
        register_secret(embedded)
        register_secret(unquote(embedded))
    return dsn, password


def classify(exc: BaseException) -> str:
    """The bounded reason for a connection or query failure."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(
        exc,
        asyncpg.InvalidPasswordError
        | asyncpg.InvalidAuthorizationSpecificationError
        | asyncpg.InsufficientPrivilegeError,
    ):
        return "auth"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    ):
        return "refused"
    if isinstance(exc, OSError) and "Connect call failed" in str(exc):
        # asyncio folds several refused addresses (::1 and 127.0.0.1) into one OSError.
        return "refused"
    return "other"


def describe(exc: BaseException) -> str:
    """A short, secret-free description of ``exc`` (type plus the server's message)."""
    if isinstance(exc, asyncpg.PostgresError):
        return f"{type(exc).__name__}: {exc.args[0] if exc.args else ''}"
    return type(exc).__name__ + (f": {exc.strerror}" if isinstance(exc, OSError) else "")


@asynccontextmanager
async def connection(target: PgTarget) -> AsyncIterator[tuple[Any, float]]:
    """A fresh connection and the seconds connecting took; PgFailure when it cannot connect."""
    dsn, password = _credentials(target)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(target.connect_timeout):
            conn = await asyncpg.connect(dsn=dsn, password=password, timeout=None)
    except Exception as exc:  # every failure becomes a bounded reason
        raise PgFailure(classify(exc), describe(exc)) from None
    connect_seconds = loop.time() - started
    try:
        yield conn, connect_seconds
    finally:
        try:
            await asyncio.wait_for(conn.close(), timeout=1.0)
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except Exception:
            conn.terminate()


async def fetch(conn: Any, target: PgTarget, query: str, *args: object) -> list[Any]:
    """Run ``query`` within the query timeout; PgFailure on any error."""
    try:
        async with asyncio.timeout(target.query_timeout):
            rows: list[Any] = await conn.fetch(query, *args)
    except asyncpg.PostgresError as exc:
        raise PgFailure("query", describe(exc)) from None
    except Exception as exc:
        raise PgFailure(classify(exc), describe(exc)) from None
    return rows
