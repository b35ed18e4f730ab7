"""Phone calls through the Twilio Calls API, reading the message with TwiML ``<Say>``."""

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from voicedrive_common.confload import Node
from voicedrive_receiver.channels._twilio import (
    TwilioChannel,
    TwilioClient,
    TwilioSettings,
    parse_twilio,
    recipient_number,
)
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage

# Twilio refuses a Twiml parameter longer than 4000 characters.
TWIML_MAX = 4000


@dataclass(frozen=True)
class PhoneSettings:
    """Twilio account plus how the message is read."""

    twilio: TwilioSettings
    language: str = "ja-JP"
    voice: str = ""
    loop: int = 2
    ring_timeout: int = 30


class PhoneType:
    """Registry entry for ``type: phone``."""

    kind = "phone"

    def parse(self, node: Node) -> PhoneSettings:
        """Settings from the channel's config mapping."""
        twilio = parse_twilio(node, allow_service=False)
        settings = PhoneSettings(
            twilio=twilio,
            language=node.text("language", "ja-JP"),
            voice=node.text("voice", ""),
            loop=node.integer("loop", 2, lo=1, hi=10),
            ring_timeout=node.integer("ring_timeout", 30, lo=5, hi=600),
        )
        node.done()
        return settings

    async def create(self, settings: PhoneSettings, *, name: str) -> "PhoneChannel":
        """A channel with its credentials resolved."""
        return PhoneChannel(name, settings, TwilioClient(settings.twilio))


def twiml(text: str, *, language: str = "ja-JP", voice: str = "", loop: int = 1) -> str:
    """``<Response><Say>`` reading ``text``, XML-escaped and cut to Twilio's limit."""
    attrs = f"language={quoteattr(language)}"
    if voice:
        attrs += f" voice={quoteattr(voice)}"
    if loop != 1:
        attrs += f' loop="{loop}"'
    head = f"<Response><Say {attrs}>"
    tail = "</Say></Response>"
    budget = TWIML_MAX - len(head) - len(tail)
    body = escape(text)
    while len(body) > budget:
        text = text[: max(len(text) - (len(body) - budget) - 1, 0)]
        body = escape(text + "…")
    return head + body + tail


class PhoneChannel(TwilioChannel[PhoneSettings]):
    """Places one call per delivery."""

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Create a Twilio Call that reads the message."""
        to = recipient_number(message, kind="phone")
        if isinstance(to, DeliveryResult):
            return to
        s = self._settings
        document = twiml(
            message.rendered.text or message.rendered.subject,
            language=s.language,
            voice=s.voice,
            loop=s.loop,
        )
        return await self._client.create(
            "Calls", {"To": to, "Twiml": document, "Timeout": str(s.ring_timeout)}
        )
