"""The channel registry: config ``type`` -> ChannelType (see ``base.py`` for the contract)."""

from voicedrive_receiver.channels.base import (
    Channel,
    ChannelType,
    DeliveryResult,
    OutboundMessage,
    Recipient,
    RenderedMessage,
)
from voicedrive_receiver.channels.console import ConsoleType
from voicedrive_receiver.channels.email import EmailType
from voicedrive_receiver.channels.phone import PhoneType
from voicedrive_receiver.channels.slack import SlackType
from voicedrive_receiver.channels.sms import SmsType
from voicedrive_receiver.channels.webhook import WebhookType

CHANNEL_TYPES: dict[str, ChannelType] = {
    t.kind: t
    for t in (SlackType(), EmailType(), SmsType(), PhoneType(), WebhookType(), ConsoleType())
}

__all__ = [
    "CHANNEL_TYPES",
    "Channel",
    "ChannelType",
    "DeliveryResult",
    "OutboundMessage",
    "Recipient",
    "RenderedMessage",
]
