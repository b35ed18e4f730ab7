"""A real SMTP server (aiosmtpd) on 127.0.0.1:0 that keeps every message it accepts.

``SmtpServer(security="starttls"|"tls"|"none", users={"user": "password"})``: with TLS the
certificate comes from a trustme CA (``server.ca_file`` for the client); with ``users`` AUTH
(PLAIN/LOGIN) is required, and only after STARTTLS. ``refuse_next(code)`` makes the next
``RCPT`` fail with that SMTP code.
"""

import asyncio
import email
import email.policy
import ssl
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    """One accepted message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        """The parsed message (headers decoded by the modern policy)."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, server: "SmtpServer") -> None:
        self._server = server

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self._server.refusals:
            code = self._server.refusals.pop(0)
            return f"{code} 5.1.1 <recipient> refused" if code >= 500 else f"{code} try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self._server.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                raw=content if isinstance(content, bytes) else content.encode("utf-8"),
                tls=_over_tls(server),
                login=login,
            )
        )
        self._server.arrived.set()
        return f"250 2.0.0 Ok: queued as Q{len(self._server.received):06d}"


class SmtpServer:
    """An aiosmtpd server in the running event loop."""

    def __init__(self, *, security: str = "none", users: dict[str, str] | None = None) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"security must be starttls, tls or none, not {security!r}")
        self.security = security
        self.users = dict(users or {})
        self.received: list[Received] = []
        self.refusals: list[int] = []
        self.arrived = asyncio.Event()
        self.port = 0
        self.host = "127.0.0.1"
        self._server: asyncio.Server | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="vd-smtp-")
        self.ca_file = ""
        self._tls: ssl.SSLContext | None = None
        if security != "none":
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(self._tls)
            self.ca_file = str(Path(self._tmp.name) / "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)

    def refuse_next(self, code: int) -> None:
        """The next RCPT TO is answered with ``code``."""
        self.refusals.append(code)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        ok = self.users.get(login) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def _protocol(self) -> SMTP:
        return SMTP(
            _Handler(self),
            hostname="smtp.test",
            tls_context=self._tls if self.security == "starttls" else None,
            require_starttls=self.security == "starttls",
            auth_required=bool(self.users),
            auth_require_tls=self.security != "none",
            authenticator=self._authenticate if self.users else None,
            decode_data=False,
        )

    async def start(self) -> None:
        """Listen on a free loopback port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self.host,
            0,
            ssl=self._tls if self.security == "tls" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop the certificates."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._tmp.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _over_tls(server: SMTP) -> bool:
    # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None
