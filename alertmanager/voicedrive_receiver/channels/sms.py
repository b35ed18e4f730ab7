"""SMS through the Twilio Messages API, cut to a configurable number of segments.

A message that fits the GSM 03.38 alphabet is sent as GSM-7: 160 septets alone, 153 per
segment when concatenated (extension characters such as ``€ [ ]`` take two). Anything else,
Japanese included, is UCS-2: 70 UTF-16 code units alone, 67 per segment; a character outside
the BMP takes two units and is never split across segments.
"""

from dataclasses import dataclass
from typing import Literal

from voicedrive_common.confload import Node
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
        body = fit(message.rendered.text or message.rendered.subject, self._settings.max_segments)
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
