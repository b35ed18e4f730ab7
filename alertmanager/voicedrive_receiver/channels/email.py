"""Email over SMTP (aiosmtplib): STARTTLS, implicit TLS or plain; optional AUTH.

Each message is multipart/alternative (UTF-8 plain text, then HTML); the subject and the
sender's display name are RFC 2047 encoded by ``email.policy.SMTP``. The Message-ID is derived
from the delivery id, so a retried delivery carries the same Message-ID and
``X-VoiceDrive-Delivery-Id``, and a mail client can drop the duplicate.
"""

import hashlib
import re
import ssl
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from voicedrive_common.clock import Clock, SystemClock
from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import SecretRef
from voicedrive_receiver.channels import _http
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage

SECURITY = ("starttls", "tls", "none")
_QUEUED = re.compile(r"queued as ([A-Za-z0-9]+)")
_HEADER_SAFE = re.compile(r"[^A-Za-z0-9._:\-]")


@dataclass(frozen=True)
class EmailSettings:
    """The SMTP server, how to reach it, and who the mail is from."""

    host: str
    port: int
    security: str
    from_address: str
    from_name: str = "VoiceDrive 監視"
    username: SecretRef | None = None
    password: SecretRef | None = None
    ca_file: str | None = None
    timeout: float = 15.0
    hello: str | None = None


class EmailType:
    """Registry entry for ``type: email``."""

    kind = "email"

    def parse(self, node: Node) -> EmailSettings:
        """Settings from the channel's config mapping."""
        security = node.text("security", "starttls", choices=SECURITY)
        default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
        from_address = node.text("from")
        if "@" not in from_address or any(c in from_address for c in " <>\r\n"):
            raise node.error("from", "must be a plain address such as alerts@example.org")
        username = node.secret("username", required=False)
        password = node.secret("password", required=False)
        if (username is None) != (password is None):
            raise node.error("password", "username and password go together")
        settings = EmailSettings(
            host=node.text("host"),
            port=node.integer("port", default_port, lo=1, hi=65535),
            security=security,
            from_address=from_address,
            from_name=node.text("from_name", "VoiceDrive 監視"),
            username=username,
            password=password,
            ca_file=node.text("ca_file", None),
            timeout=node.duration("timeout", 15.0, lo=0.1),
            hello=node.text("hello", None),
        )
        node.done()
        return settings

    async def create(
        self, settings: EmailSettings, *, name: str, clock: Clock | None = None
    ) -> "EmailChannel":
        """A channel with its credentials resolved and its TLS context ready."""
        username = settings.username.resolve().reveal() if settings.username else None
        password = settings.password.resolve().reveal() if settings.password else None
        tls_context = None
        if settings.security != "none":
            try:
                tls_context = ssl.create_default_context(cafile=settings.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{name}.ca_file", f"cannot load CA file: {getattr(exc, 'strerror', exc)}"
                ) from None
        return EmailChannel(
            name,
            settings,
            username=username,
            password=password,
            tls_context=tls_context,
            clock=clock or SystemClock(),
        )


class EmailChannel:
    """Sends one email per delivery, one SMTP connection each."""

    def __init__(
        self,
        name: str,
        settings: EmailSettings,
        *,
        username: str | None,
        password: str | None,
        tls_context: ssl.SSLContext | None,
        clock: Clock,
    ) -> None:
        self.name = name
        self._settings = settings
        self._username = username
        self._password = password
        self._tls_context = tls_context
        self._clock = clock

    def build(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message for one delivery."""
        s = self._settings
        rendered = message.rendered
        mail = EmailMessage(policy=policy.SMTP)
        mail["Subject"] = rendered.subject or "[VoiceDrive]"
        mail["From"] = Address(display_name=s.from_name, addr_spec=s.from_address)
        mail["To"] = Address(addr_spec=_http.recipient_address(message.recipient))
        mail["Date"] = format_datetime(self._clock.now())
        mail["Message-ID"] = message_id(message.delivery_id, s.from_address)
        mail["X-VoiceDrive-Delivery-Id"] = _HEADER_SAFE.sub("_", message.delivery_id)[:200]
        mail["X-VoiceDrive-Level"] = str(message.level)
        mail["Auto-Submitted"] = "auto-generated"
        # base64 keeps the message 7-bit clean for relays without 8BITMIME.
        mail.set_content(rendered.text or rendered.subject, charset="utf-8", cte="base64")
        if rendered.html:
            mail.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="base64")
        return mail

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Hand the mail to the SMTP server; 5xx answers are permanent, the rest retry."""
        s = self._settings
        try:
            mail = self.build(message)
        except (ValueError, TypeError, IndexError, MessageError) as exc:
            # A malformed recipient address: the config is wrong, a retry will not fix it.
            detail = f"email: cannot build message ({type(exc).__name__})"
            return DeliveryResult(ok=False, detail=detail, permanent=True)
        try:
            _errors, response = await aiosmtplib.send(
                mail,
                hostname=s.host,
                port=s.port,
                username=self._username,
                password=self._password,
                use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
                tls_context=self._tls_context,
                timeout=s.timeout,
                local_hostname=s.hello,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            return _smtp_failure("recipient refused", codes[0] if codes else 550)
        except aiosmtplib.SMTPResponseException as exc:
            return _smtp_failure(type(exc).__name__, exc.code)
        except aiosmtplib.SMTPTimeoutError:
            return DeliveryResult(ok=False, detail="email: SMTP timed out")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return DeliveryResult(ok=False, detail=f"email: SMTP failed ({type(exc).__name__})")
        queued = _QUEUED.search(response or "")
        upstream = queued.group(1) if queued else str(mail["Message-ID"])
        return DeliveryResult(ok=True, detail="email: accepted", upstream_id=upstream)

    async def close(self) -> None:
        """Nothing pooled: one connection per message."""


def message_id(delivery_id: str, from_address: str) -> str:
    """A stable Message-ID for a delivery: the same delivery id always gives the same one."""
    digest = hashlib.sha256(delivery_id.encode("utf-8")).hexdigest()[:32]
    domain = from_address.rsplit("@", 1)[-1] or "voicedrive.invalid"
    return f"<vd.{digest}@{domain}>"


def _smtp_failure(what: str, code: int) -> DeliveryResult:
    # 5xx is a definite refusal; 4xx (421 busy, 451 greylisting) is worth another try.
    return DeliveryResult(
        ok=False, detail=f"email: {what} (SMTP {code})", permanent=500 <= code < 600
    )
