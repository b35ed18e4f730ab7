"""SMS through the Twilio Messages API, cut to a configurable number of segments.

A message that fits the GSM 03.38 alphabet is sent as GSM-7: 160 septets alone, 153 per
segment when concatenated (extension characters such as ``€ [ ]`` take two). Anything else,
Japanese included, is UCS-2: 70 UTF-16 code units alone, 67 per segment; a character outside
the BMP takes two units and is never split across segments.

Reconciliation: an in-doubt SMS is looked up in the account's Messages list, filtered by
``To``, ``From`` (or, with a Messaging Service, matched on ``messaging_service_sid``) and
``DateSent>`` (on or after that UTC day; Twilio's filter is day-granular), and matched by the
exact body the channel would send and a ``date_created`` at or after the attempt's start less
the margin. A message Twilio reports ``failed``/``undelivered``/``canceled`` does not count:
sending again is better than a page that never arrived.
"""

from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from voicedrive_common.confload import Node
from voicedrive_receiver.channels import _http
from voicedrive_receiver.channels._twilio import (
    TwilioChannel,
    TwilioClient,
    TwilioSettings,
    parse_twilio,
    recipient_number,
)
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage

Encoding = Literal["GSM-7", "UCS-2"]

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
LIMITS: dict[Encoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}
ELLIPSIS: dict[Encoding, str] = {"GSM-7": "...", "UCS-2": "…"}
# Twilio refuses a Body longer than 1600 characters.
TWILIO_MAX_BODY = 1600
# Bounded lookup of an in-doubt message: pages of the Messages list, and their size.
LIST_MAX_PAGES = 5
LIST_PAGE_SIZE = 50
# Statuses of a message that did not and will not reach the handset.
NOT_DELIVERED = frozenset({"failed", "undelivered", "canceled"})


@dataclass(frozen=True)
class SmsFit:
    """A body that fits the segment cap, and how it will travel."""

    text: str
    encoding: Encoding
    segments: int
    truncated: bool


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in the GSM alphabet, else UCS-2."""
    if all(c in GSM_BASIC or c in GSM_EXTENSION for c in text):
        return "GSM-7"
    return "UCS-2"


def _units(char: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return 2 if char in GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def length_in_units(text: str, encoding: Encoding | None = None) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text takes."""
    enc = encoding or encoding_of(text)
    return sum(_units(c, enc) for c in text)


def split_segments(text: str) -> list[str]:
    """The segments a carrier sends, never cutting a character's units apart."""
    enc = encoding_of(text)
    single, per_segment = LIMITS[enc]
    if length_in_units(text, enc) <= single:
        return [text] if text else []
    segments: list[str] = []
    current: list[str] = []
    used = 0
    for char in text:
        size = _units(char, enc)
        if used + size > per_segment:
            segments.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += size
    if current:
        segments.append("".join(current))
    return segments


def fit(text: str, max_segments: int) -> SmsFit:
    """``text`` cut (with an ellipsis) so that it needs at most ``max_segments`` segments."""
    original = text.strip()
    text = original[:TWILIO_MAX_BODY]
    segments = split_segments(text)
    enc = encoding_of(text)
    if len(segments) <= max_segments and len(text) == len(original):
        return SmsFit(text, enc, len(segments), truncated=False)
    ellipsis = ELLIPSIS[enc]
    single, per_segment = LIMITS[enc]
    budget = single if max_segments == 1 else per_segment * max_segments
    # Start near the answer (every character takes at least one unit), then step back one
    # character, a whole code point, at a time.
    keep = min(len(text), budget)
    while keep > 0:
        candidate = text[:keep].rstrip() + ellipsis
        if len(split_segments(candidate)) <= max_segments:
            return SmsFit(candidate, encoding_of(candidate), len(split_segments(candidate)), True)
        keep -= 1
    return SmsFit(ellipsis, enc, 1, True)


@dataclass(frozen=True)
class SmsSettings:
    """Twilio account plus the segment cap."""

    twilio: TwilioSettings
    max_segments: int = 3


class SmsType:
    """Registry entry for ``type: sms``."""

    kind = "sms"

    def parse(self, node: Node) -> SmsSettings:
        """Settings from the channel's config mapping."""
        twilio = parse_twilio(node, allow_service=True)
        max_segments = node.integer("max_segments", 3, lo=1, hi=10)
        node.done()
        return SmsSettings(twilio=twilio, max_segments=max_segments)

    async def create(self, settings: SmsSettings, *, name: str) -> "SmsChannel":
        """A channel with its credentials resolved."""
        return SmsChannel(name, settings, TwilioClient(settings.twilio))


class SmsChannel(TwilioChannel[SmsSettings]):
    """Sends one SMS per delivery."""

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Create a Twilio Message for the recipient."""
        to = recipient_number(message, kind="sms")
        if isinstance(to, DeliveryResult):
            return to
        body = self._body(message)
        result = await self._client.create("Messages", {"To": to, "Body": body.text})
        cut = ", truncated" if body.truncated else ""
        note = f" ({body.encoding}, {body.segments} segments{cut})"
        return DeliveryResult(
            ok=result.ok,
            detail=result.detail + note,
            retry_after=result.retry_after,
            permanent=result.permanent,
            upstream_id=result.upstream_id,
        )

    def _body(self, message: OutboundMessage) -> SmsFit:
        return fit(message.rendered.text or message.rendered.subject, self._settings.max_segments)

    async def find_delivered(self, message: OutboundMessage, since: float) -> DeliveryResult | None:
        """Look for the exact body sent to the recipient at or after ``since``."""
        to = recipient_number(message, kind="sms")
        if isinstance(to, DeliveryResult):
            return DeliveryResult(ok=False, detail=to.detail)
        body = self._body(message).text
        params = {
            "To": to,
            "DateSent>": datetime.fromtimestamp(max(0.0, since), UTC).strftime("%Y-%m-%d"),
            "PageSize": str(LIST_PAGE_SIZE),
        }
        if "From" in self._client.sender:
            params["From"] = self._client.sender["From"]
        service = self._client.messaging_service_sid
        pages = self._client.list_pages("Messages", params, max_pages=LIST_MAX_PAGES)
        async with aclosing(pages):
            async for page in pages:
                if isinstance(page, DeliveryResult):
                    return page
                for item in page:
                    if _same_message(item, to=to, body=body, since=since, service=service):
                        state = _http.safe_code(item.get("status")) or "unknown"
                        return DeliveryResult(
                            ok=True,
                            detail=f"twilio Messages list: found ({state})",
                            upstream_id=str(item["sid"]),
                        )
        return None


def _same_message(
    item: dict[str, Any], *, to: str, body: str, since: float, service: str | None
) -> bool:
    if not item.get("sid") or item.get("to") != to or item.get("body") != body:
        return False
    if not str(item.get("direction", "")).startswith("outbound"):
        return False
    if item.get("status") in NOT_DELIVERED:
        return False
    if service is not None and item.get("messaging_service_sid") != service:
        return False
    created = _rfc2822(item.get("date_created"))
    return created is not None and created >= since


def _rfc2822(value: object) -> float | None:
    when = _http.http_date(value)
    return when.timestamp() if when is not None else None
