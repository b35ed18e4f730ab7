"""A TCP proxy in front of PostgreSQL, so "the database" can go down without stopping it.

Down means what a dead database server looks like from the network: live connections are cut
and new ones are refused (the listening socket is closed, not merely ignored).
"""

import asyncio
import contextlib
import logging

log = logging.getLogger("voicedrive_sim.dbproxy")

_CHUNK = 65536
_CONNECT_TIMEOUT = 5.0


class DbProxy:
    """Forwards every accepted connection to ``target``; ``set_down`` cuts and refuses."""

    def __init__(self, *, host: str, port: int, target_host: str, target_port: int) -> None:
        self.host = host
        self.port = port
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def is_open(self) -> bool:
        """Whether new connections are accepted."""
        return self._server is not None

    @property
    def live_connections(self) -> int:
        """Connections being forwarded right now."""
        return len(self._pipes)

    async def open(self) -> None:
        """Start accepting, on the port first bound."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        if self.port == 0:
            self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("database proxy open", extra={"address": f"{self.host}:{self.port}"})

    async def close(self) -> None:
        """Refuse new connections and cut the live ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        pipes = list(self._pipes)
        for task in pipes:
            task.cancel()
        if pipes:
            await asyncio.gather(*pipes, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
            log.info("database proxy closed")

    async def set_down(self, down: bool) -> None:
        """Match the board's database fault."""
        if down:
            await self.close()
        else:
            await self.open()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            # Cut by close(): end quietly, the client sees its connection reset.
            pass
        finally:
            self._pipes.discard(task)
            _abort(writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self._target), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            log.warning("database proxy cannot reach its target", extra={"err": type(exc).__name__})
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(reader, up_writer))
                group.create_task(_pump(up_reader, writer))
        except* OSError:
            pass
        finally:
            _abort(up_writer)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(_CHUNK):
        sink.write(data)
        await sink.drain()
    # One side finished: half-close is not worth modelling, end both directions.
    raise ConnectionResetError("peer closed")


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
