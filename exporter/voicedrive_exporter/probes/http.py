"""Bounded HTTP fetches for the API and the HTTP notification probes.

Shared because two probes fetch: redirects are bounded, the body is streamed and capped (an
endless body costs at most ``max_body_bytes`` of memory), TLS verification is on by default.
"""

import asyncio
import functools
import ssl
from dataclasses import dataclass

import aiohttp
from aiohttp.connector import Connection

from voicedrive_exporter.config import TLSClient

CHUNK = 64 * 1024


class FetchFailure(Exception):
    """The fetch failed; ``reason`` is bounded, ``status`` is set when a response arrived."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Fetched:
    """A complete response: status, body (at most the cap) and the certificate's expiry."""

    status: int
    body: bytes
    cert_expiry: float | None


@functools.lru_cache(maxsize=16)
def client_ssl(tls: TLSClient) -> ssl.SSLContext | bool:
    """The SSL setting for aiohttp: the default verifying context, a CA file's, or no checks."""
    if tls.insecure_skip_verify:
        return False
    if tls.ca_file is None:
        return True
    return ssl.create_default_context(cafile=tls.ca_file)


class ProbeResponse(aiohttp.ClientResponse):
    """A response that remembers the peer certificate's expiry.

    aiohttp releases the connection as soon as a small body is complete, before the caller can
    look at the TLS transport, so the expiry is read in ``start()`` while the connection is
    still attached.
    """

    cert_expiry: float | None = None

    async def start(self, connection: Connection) -> "ProbeResponse":
        """Read the certificate, then the status line and headers."""
        transport = connection.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None:
            # getpeercert() has fields only for a verified certificate: unverified, no expiry.
            cert = ssl_object.getpeercert()
            not_after = cert.get("notAfter") if cert else None
            if not_after:
                self.cert_expiry = float(ssl.cert_time_to_seconds(str(not_after)))
        await super().start(connection)
        return self


def new_session(*, user_agent: str) -> aiohttp.ClientSession:
    """The probes' HTTP client: a fresh connection per request, no cookies, no decompression."""
    # A kept-alive socket would hide a listener that stopped accepting, and connect time is
    # part of what an API probe should measure.
    connector = aiohttp.TCPConnector(force_close=True, limit=0, ttl_dns_cache=10)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent},
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        response_class=ProbeResponse,
    )


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    tls: TLSClient,
    max_redirects: int,
    max_body_bytes: int,
) -> Fetched:
    """Fetch ``url``; FetchFailure with a bounded reason on any problem (no timeout here)."""
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            ssl=client_ssl(tls),
            allow_redirects=max_redirects > 0,
            max_redirects=max(max_redirects, 1),
            timeout=aiohttp.ClientTimeout(total=None),
        ) as resp:
            if max_redirects == 0 and 300 <= resp.status < 400:
                raise FetchFailure("redirects", status=resp.status)
            expiry = resp.cert_expiry if isinstance(resp, ProbeResponse) else None
            body = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                body += chunk
                if len(body) > max_body_bytes:
                    raise FetchFailure("body_too_large", status=resp.status)
            return Fetched(resp.status, bytes(body), expiry)
    except FetchFailure:
        raise
    except aiohttp.TooManyRedirects:
        raise FetchFailure("redirects") from None
    except aiohttp.ClientConnectorCertificateError:
        raise FetchFailure("tls") from None
    except aiohttp.ClientSSLError:
        raise FetchFailure("tls") from None
    except aiohttp.ClientConnectorDNSError:
        raise FetchFailure("dns") from None
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        raise FetchFailure("refused" if refused else "connect") from None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        raise FetchFailure("connection_lost") from None
    except aiohttp.ClientError:
        raise FetchFailure("other") from None
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        raise
    except OSError:
        raise FetchFailure("connect") from None
