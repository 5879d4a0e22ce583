"""A TCP proxy that can go silent, as a dropped network does: no FIN, no RST, the bytes just stop.

While `silent`, nothing is passed on either way (what was read is held, and goes on once it speaks
again), and a new connection is taken but not connected onwards: a browser sees a handshake that is
never answered. That is what a Wi-Fi drop or a NAT that forgot the connection looks like from either
end, which a closed port or a reset connection is not.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from yarl import URL

CHUNK_BYTES = 64 * 1024


class SilentProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` (host and port of a URL); `start` it, `close` it."""

    def __init__(self, upstream: URL) -> None:
        self.upstream = upstream
        self.url = URL()
        self._speaking = asyncio.Event()
        self._speaking.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def silent(self) -> bool:
        return not self._speaking.is_set()

    def go_silent(self) -> None:
        self._speaking.clear()

    def speak(self) -> None:
        self._speaking.set()

    async def start(self) -> URL:
        """Listen on a free port of 127.0.0.1; returns ``http://127.0.0.1:PORT/``."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = URL.build(scheme="http", host=host, port=port, path="/")
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._speaking.wait()
            try:
                reader, writer = await asyncio.open_connection(self.upstream.host, self.upstream.port)
            except OSError:
                return
            try:
                await asyncio.gather(self._pipe(client_reader, writer), self._pipe(reader, client_writer))
            finally:
                writer.close()
        finally:
            client_writer.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(CHUNK_BYTES):
                await self._speaking.wait()
                writer.write(data)
                await writer.drain()
        writer.close()
