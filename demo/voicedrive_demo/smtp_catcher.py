"""The demo's mail catcher: an SMTP server on loopback that keeps every message as a file.

``python -m voicedrive_demo.smtp_catcher --listen 127.0.0.1:10025 --dir .demo/mail`` stores each
message as ``<dir>/<n>-<time>.eml`` and logs its subject, so the pages the receiver mails can be
read without a mail client.
"""

import argparse
import asyncio
import email
import email.policy
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from voicedrive_common.logs import setup_logging

log = logging.getLogger("voicedrive_demo.smtp_catcher")


class MaildirHandler:
    """aiosmtpd handler: write the message to a file, answer 250."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store one message."""
        self.count += 1
        content: bytes = envelope.original_content or envelope.content
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.directory / f"{self.count:05d}-{stamp}.eml"
        path.write_bytes(content)
        message = email.message_from_bytes(content, policy=email.policy.default)
        log.info(
            "mail received",
            extra={
                "subject": str(message.get("Subject", "")),
                "recipients": len(envelope.rcpt_tos),
                "file": path.name,
            },
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, directory: Path) -> None:
    """Accept mail until SIGTERM or SIGINT."""
    handler = MaildirHandler(directory)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="voicedrive-demo", enable_SMTPUTF8=True),
        host,
        port,
        reuse_address=True,
    )
    log.info("SMTP catcher listening", extra={"address": f"{host}:{port}", "dir": str(directory)})
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m voicedrive_demo.smtp_catcher``)."""
    parser = argparse.ArgumentParser(prog="voicedrive-demo-smtp")
    parser.add_argument("--listen", default="127.0.0.1:10025", help="HOST:PORT")
    parser.add_argument("--dir", required=True, help="directory for the .eml files")
    args = parser.parse_args(argv)
    setup_logging()
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"voicedrive-demo-smtp: --listen: expected HOST:PORT, got {args.listen!r}")
        return 2
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(host, int(port), directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
