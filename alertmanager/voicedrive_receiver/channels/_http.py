"""HTTP plumbing shared by the Slack, Twilio and webhook channels.

Transport errors become results, never exceptions; an exception's text is not used in a
result because aiohttp puts the URL in it, and a Slack webhook URL is a secret.
"""

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from voicedrive_common.errors import ConfigError
from voicedrive_common.jsonbody import JsonBodyError, parse_json_text
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels.base import DeliveryResult, Recipient

USER_AGENT = "voicedrive-receiver/0.1"
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class HttpReply:
    """An upstream's answer, read in full."""

    status: int
    headers: "CIMultiDictProxy[str]"
    text: str


def new_session(timeout: float) -> aiohttp.ClientSession:
    """One pooled client session per channel, every request bounded by ``timeout`` seconds."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT},
    )


async def request(
    session: aiohttp.ClientSession, method: str, url: str | URL, *, what: str, **kwargs: Any
) -> HttpReply | DeliveryResult:
    """Send one request; a transport failure is a retryable DeliveryResult naming ``what``."""
    try:
        async with session.request(method, url, allow_redirects=False, **kwargs) as response:
            text = await response.text(errors="replace")
            return HttpReply(response.status, response.headers, text)
    except TimeoutError:
        # The request may have been read and acted on before the answer was late.
        return DeliveryResult(ok=False, detail=f"{what}: timed out", in_doubt=True)
    except aiohttp.ClientConnectorError as exc:
        # Never connected: the upstream cannot have seen the request.
        return DeliveryResult(ok=False, detail=f"{what}: connection failed ({type(exc).__name__})")
    except aiohttp.ClientConnectionError as exc:
        return DeliveryResult(
            ok=False, detail=f"{what}: connection failed ({type(exc).__name__})", in_doubt=True
        )
    except aiohttp.ClientError as exc:
        return DeliveryResult(
            ok=False, detail=f"{what}: request failed ({type(exc).__name__})", in_doubt=True
        )
    except asyncio.CancelledError:
        raise


def retry_after(headers: "CIMultiDictProxy[str]", *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    when = http_date(value)
    if when is None:
        return None
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def http_date(value: object) -> datetime | None:
    """An RFC 2822 / HTTP date (Retry-After, Twilio's date fields) as aware UTC; None if not."""
    if not isinstance(value, str):
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def failure(
    status: int, headers: "CIMultiDictProxy[str]", *, what: str, code: str = ""
) -> DeliveryResult:
    """The result for a non-success HTTP status: 429/408/5xx retry, other 4xx are permanent."""
    safe = safe_code(code) if code else ""
    suffix = f" error {safe}" if safe else ""
    detail = f"{what}: HTTP {status}{suffix}"
    if status == 429:
        return DeliveryResult(ok=False, detail=detail, retry_after=retry_after(headers))
    if status == 408 or status >= 500:
        return DeliveryResult(ok=False, detail=detail, retry_after=retry_after(headers))
    if 400 <= status < 500:
        return DeliveryResult(ok=False, detail=detail, permanent=True)
    return DeliveryResult(ok=False, detail=detail)


def safe_code(code: object) -> str:
    """An upstream error code if it looks like one (``channel_not_found``, ``21211``), else ''."""
    text = str(code).strip()
    return text if _CODE.match(text) else ""


def reveal(address: Secret | str) -> str:
    """The recipient address as text."""
    return address.reveal() if isinstance(address, Secret) else address


def recipient_address(recipient: Recipient) -> str:
    """The recipient's address, stripped."""
    return reveal(recipient.address).strip()


def check_http_url(url: str, path: str) -> URL:
    """An absolute http(s) URL; the error names the key, never the (possibly secret) value."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise ConfigError(path, "is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(path, "must be an absolute http:// or https:// URL")
    return parsed


def json_object(text: str) -> dict[str, Any] | None:
    """An upstream reply's JSON object, or None when it is not one (never raises)."""
    try:
        value = parse_json_text(text)
    except JsonBodyError:
        return None
    return value if isinstance(value, dict) else None
