"""The listening socket of the exporter, re-opened when a reload changes its TLS settings."""

import logging
import ssl

from aiohttp import web

log = logging.getLogger("voicedrive_exporter")


class Listener:
    """One TCP site of ``runner`` on ``host:port``; ``restart`` swaps its TLS context.

    An open SSLContext cannot take new client-auth or version settings (and an SNI callback
    can only swap the certificate), so a changed TLS section re-opens the listening socket on
    the same port. Connections already open keep the settings they were made with.
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self._host = host
        self._port = port
        self._site: web.TCPSite | None = None
        self._ssl: ssl.SSLContext | None = None

    @property
    def address(self) -> str:
        """``host:port`` as bound (the real port when 0 was asked for)."""
        return f"{self._host}:{self._port}"

    @property
    def tls(self) -> bool:
        """Whether the socket speaks TLS."""
        return self._ssl is not None

    async def start(self, ssl_context: ssl.SSLContext | None) -> None:
        """Open the socket; OSError when the address cannot be bound."""
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=ssl_context)
        await site.start()
        self._site, self._ssl = site, ssl_context
        if self._port == 0:
            # Keep the port the system chose, so a restart binds the same one.
            self._port = int(self._runner.addresses[-1][1])

    async def restart(self, ssl_context: ssl.SSLContext | None) -> None:
        """Re-open with ``ssl_context``; on failure the old settings are served again."""
        old_site, old_ssl = self._site, self._ssl
        if old_site is not None:
            await old_site.stop()
        try:
            await self.start(ssl_context)
        except OSError:
            if old_site is not None:
                await self.start(old_ssl)
            raise
