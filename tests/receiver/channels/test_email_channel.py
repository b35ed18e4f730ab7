"""Email channel against a real aiosmtpd server: STARTTLS, implicit TLS, AUTH, MIME shape."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from receiver.fakes.smtp import SmtpServer
from voicedrive_common.clock import FakeClock
from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels.base import OutboundMessage
from voicedrive_receiver.channels.email import EmailType, message_id

MessageFn = Callable[..., OutboundMessage]
LEAD = "tech-lead@voicedrive.example"
USER, PASSWORD = "alerts", "s3cret-smtp-pass"
SUBJECT = "[VoiceDrive][レベル2 中程度] API 応答が遅い（3 件）"


@pytest.fixture
async def starttls_server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(security="starttls", users={USER: PASSWORD}) as server:
        yield server


async def email_channel(server: SmtpServer, clock: FakeClock | None = None, **extra: Any) -> Any:
    config: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "security": server.security,
        "from": "alerts@voicedrive.example",
        "from_name": "VoiceDrive 監視",
        "timeout": "5s",
    }
    if server.ca_file:
        config["ca_file"] = server.ca_file
    if server.users:
        config.update(username=USER, password=PASSWORD)
    config.update(extra)
    kind = EmailType()
    return await kind.create(kind.parse(Node(config, "channels.mail")), name="mail", clock=clock)


def mail(message: MessageFn, **overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "subject": SUBJECT,
        "text": "API の応答が 500 ms を超えています。",
        "html": "<p>API &lt;応答&gt; が遅い</p>",
        "address": Secret(LEAD),
        "contact": "tech_lead",
        "level": 2,
    }
    values.update(overrides)
    return message(**values)


async def test_japanese_subject_arrives_decoded_over_starttls_with_auth(
    starttls_server: SmtpServer, message: MessageFn
) -> None:
    channel = await email_channel(starttls_server)
    result = await channel.send(mail(message))
    assert result.ok, result.detail
    [received] = starttls_server.received
    assert received.tls
    assert received.login == USER
    assert received.rcpt_tos == [LEAD]
    assert received.message["Subject"] == SUBJECT


async def test_subject_and_sender_name_are_rfc2047_encoded_on_the_wire(
    starttls_server: SmtpServer, message: MessageFn
) -> None:
    channel = await email_channel(starttls_server)
    await channel.send(mail(message))
    raw = starttls_server.received[0].raw.decode("ascii")
    headers = raw.split("\r\n\r\n", 1)[0].replace("\r\n ", " ")
    lines = {line.split(":", 1)[0]: line for line in headers.split("\r\n")}
    assert lines["Subject"].startswith("Subject: =?utf-8?")
    assert "=?utf-8?" in lines["From"]
    assert lines["From"].endswith("<alerts@voicedrive.example>")
    assert starttls_server.received[0].message["From"].addresses[0].display_name == (
        "VoiceDrive 監視"
    )


async def test_body_is_multipart_alternative_with_utf8_text_and_html(
    starttls_server: SmtpServer, message: MessageFn
) -> None:
    channel = await email_channel(starttls_server)
    await channel.send(mail(message))
    parsed = starttls_server.received[0].message
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content_charset() == "utf-8"
    assert plain.get_content().strip() == "API の応答が 500 ms を超えています。"
    assert "API &lt;応答&gt; が遅い" in html.get_content()


async def test_message_id_and_delivery_id_header_are_stable_per_delivery(
    starttls_server: SmtpServer, message: MessageFn
) -> None:
    channel = await email_channel(starttls_server)
    await channel.send(mail(message, delivery_id="group-1/email/tech_lead"))
    await channel.send(mail(message, delivery_id="group-1/email/tech_lead"))
    first, second = (r.message for r in starttls_server.received)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"] == message_id("group-1/email/tech_lead", "x@voicedrive.example")
    assert first["X-VoiceDrive-Delivery-Id"] == "group-1_email_tech_lead"


async def test_upstream_id_is_the_smtp_queue_id(
    starttls_server: SmtpServer, message: MessageFn
) -> None:
    channel = await email_channel(starttls_server)
    result = await channel.send(mail(message))
    assert result.upstream_id == "Q000001"


async def test_date_header_comes_from_the_clock(
    starttls_server: SmtpServer, message: MessageFn, clock: FakeClock
) -> None:
    channel = await email_channel(starttls_server, clock=clock)
    await channel.send(mail(message))
    assert starttls_server.received[0].message["Date"] == "Mon, 01 Sep 2025 00:00:00 +0000"


async def test_implicit_tls_delivers(message: MessageFn) -> None:
    async with SmtpServer(security="tls") as server:
        channel = await email_channel(server)
        result = await channel.send(mail(message))
        assert result.ok, result.detail
        assert server.received[0].tls


async def test_plain_smtp_without_tls_delivers(message: MessageFn) -> None:
    async with SmtpServer(security="none") as server:
        channel = await email_channel(server)
        assert (await channel.send(mail(message))).ok
        assert not server.received[0].tls


async def test_wrong_password_is_permanent_and_not_in_detail_or_logs(
    starttls_server: SmtpServer, message: MessageFn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = await email_channel(starttls_server, password="wrong-password-x")
    result = await channel.send(mail(message))
    assert (result.ok, result.permanent) == (False, True)
    assert "SMTP 535" in result.detail
    for text in (result.detail, caplog.text):
        assert "wrong-password-x" not in text
    assert starttls_server.received == []


async def test_recipient_refused_with_5xx_is_permanent_without_the_address(
    starttls_server: SmtpServer, message: MessageFn
) -> None:
    channel = await email_channel(starttls_server)
    starttls_server.refuse_next(550)
    result = await channel.send(mail(message))
    assert (result.ok, result.permanent) == (False, True)
    assert LEAD not in result.detail


async def test_recipient_refused_with_4xx_is_retryable(
    starttls_server: SmtpServer, message: MessageFn
) -> None:
    channel = await email_channel(starttls_server)
    starttls_server.refuse_next(451)
    result = await channel.send(mail(message))
    assert (result.ok, result.permanent) == (False, False)


async def test_unreachable_server_is_retryable(message: MessageFn) -> None:
    server = SmtpServer(security="none")
    await server.start()
    await server.stop()
    channel = await email_channel(server, timeout="2s")
    result = await asyncio.wait_for(channel.send(mail(message)), 10)
    assert (result.ok, result.permanent) == (False, False)


def test_config_rejects_username_without_password() -> None:
    node = Node({"host": "h", "from": "a@b.example", "username": "u"}, "channels.mail")
    with pytest.raises(ConfigError, match=r"channels.mail.password: username and password"):
        EmailType().parse(node)


def test_config_security_must_be_known() -> None:
    node = Node({"host": "h", "from": "a@b.example", "security": "ssl"}, "channels.mail")
    with pytest.raises(ConfigError, match=r"channels.mail.security: must be one of"):
        EmailType().parse(node)


def test_config_default_port_follows_security() -> None:
    parsed = EmailType().parse(
        Node({"host": "h", "from": "a@b.example", "security": "tls"}, "channels.mail")
    )
    assert parsed.port == 465


@pytest.mark.parametrize("address", ["not an address", "a@b@c", "", "x@y\r\nBcc: z@w"])
async def test_malformed_recipient_address_is_permanent(
    starttls_server: SmtpServer, message: MessageFn, address: str
) -> None:
    channel = await email_channel(starttls_server)
    result = await channel.send(mail(message, address=Secret(address)))
    assert (result.ok, result.permanent) == (False, True)
    assert starttls_server.received == []
