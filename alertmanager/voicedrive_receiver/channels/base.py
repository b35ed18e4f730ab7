"""The one contract every delivery channel fulfils.

The outbox worker hands a channel one ``OutboundMessage`` at a time and gets a
``DeliveryResult`` back; the channel never raises for upstream trouble (a refused connection,
a 429, an error body): it says so in the result, and the worker decides about retries.
Limits that belong to a channel (Slack block size, SMS segments, rate limits) live in it.

A channel whose upstream can be read back may also be a ``Reconciler``: before resending a
message whose previous attempt ended without an outcome (a crash after the upstream accepted
it, a local timeout), the worker asks ``find_delivered`` whether it already arrived.
"""

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from voicedrive_common.confload import Node
from voicedrive_common.secrets import Secret

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Recipient:
    """Who gets a message; ``address`` is resolved from the contact at send time.

    ``contact`` is the config key (``tech_lead``, ``hotline``): it is what the store keeps,
    so phone numbers and addresses never land in the database or the logs.
    """

    contact: str
    address: Secret | str


@dataclass(frozen=True)
class RenderedMessage:
    """Texts produced by the templates for one channel (unused parts are empty)."""

    subject: str = ""
    text: str = ""
    html: str = ""
    # Channel-specific structured payload, e.g. Slack blocks; JSON-serialisable.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    """One (alert group, channel, recipient) delivery, as stored in the outbox."""

    delivery_id: str
    channel: str
    recipient: Recipient
    status: Status
    level: int
    incident_id: str
    rendered: RenderedMessage


@dataclass(frozen=True)
class DeliveryResult:
    """What happened; ``detail`` is safe to log (no secrets, no message body)."""

    ok: bool
    detail: str = ""
    # Seconds the upstream asked us to wait (Slack/Twilio 429 Retry-After).
    retry_after: float | None = None
    # True when retrying cannot help (a 4xx other than 429, a rejected recipient).
    permanent: bool = False
    # Upstream id of the accepted message (Slack ts, Twilio SID, SMTP queue id), for records.
    upstream_id: str | None = None
    # True when the request may have reached the upstream although no answer came back (a
    # timeout, a connection dropped after sending): the retry is in doubt and reconciled first.
    in_doubt: bool = False


class Channel(Protocol):
    """A delivery channel instance, created from its settings at start."""

    name: str

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver one message; never raise for upstream failures."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class Reconciler(Protocol):
    """The optional capability of a channel whose upstream shows what it already accepted."""

    async def find_delivered(self, message: OutboundMessage, since: float) -> DeliveryResult | None:
        """Look ``message`` up among what the upstream accepted at or after ``since`` (UNIX s).

        A success result (``upstream_id`` set) when it is there, ``None`` when it is certainly
        not, and a failed result when the lookup could not tell (an error, too many pages):
        the worker then sends again, since a lost page is worse than a doubled one. Never
        raises for upstream failures.
        """
        ...


class ChannelType(Protocol):
    """A registry entry: parses its config section and builds the channel."""

    kind: str

    def parse(self, node: Node) -> Any:
        """Typed, frozen settings from the channel's config mapping (call ``node.done()``)."""
        ...

    async def create(self, settings: Any, *, name: str) -> Channel:
        """A ready channel; secrets are resolved here, not at parse time."""
        ...
