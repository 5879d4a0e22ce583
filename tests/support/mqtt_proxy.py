"""A TCP proxy in front of an MQTT broker that can hold back the broker's answers, lose what the client
sends, and sees what is published.

Holding the answers (PUBACKs among them) while the client goes on sending shows how many publishes a
client keeps on their way at once without measuring time: one that waits for each confirmation
sends one and stops. Cutting a connection that subscribes is what a broker does that ends the
connection of an account asking for what its policy forbids (AWS IoT).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

PUBLISH = 3  # the MQTT control packet type, in the high nibble of a packet's first byte
SUBSCRIBE = 8
READ_SIZE = 65536


class HoldingProxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to the broker on ``broker_port``."""

    def __init__(self, broker_port: int) -> None:
        self._broker_port = broker_port
        self._answers = asyncio.Event()  # set: the broker's bytes go through
        self._answers.set()
        self._swallowing = False  # what the client sends is lost
        self._cutting_subscribers = False  # a connection that subscribes is cut before the broker sees it
        #: Connections cut for subscribing.
        self.subscriptions_cut = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0
        #: The topic of every PUBLISH a client sent through the proxy, in order.
        self.published: list[str] = []

    async def __aenter__(self) -> HoldingProxy:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self.drop()
        await self._server.wait_closed()

    async def drop(self) -> None:
        """Cut every connection through the proxy now, as a network failure would; new ones come through,
        those a client opens while this one cuts the others among them (a client that reconnects at once)."""
        pumps, self._pumps = self._pumps, set()
        writers, self._writers = self._writers, []
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for writer in writers:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)

    def hold(self) -> None:
        """Keep what the broker sends from here on (its PUBACKs among it) until `release`."""
        self._answers.clear()

    def swallow(self) -> None:
        """Lose what the client sends from here on (noted in `published` all the same) until `release`:
        a link that died one way, before `drop` cuts it."""
        self._swallowing = True

    def cut_subscribers(self) -> None:
        """From here on, cut a connection as its client subscribes, before the broker sees the SUBSCRIBE."""
        self._cutting_subscribers = True

    def release(self) -> None:
        self._answers.set()
        self._swallowing = False

    async def _connected(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self._broker_port)
        self._writers += [client_writer, broker_writer]
        to_broker = self._to_broker(client_reader, broker_writer, client_writer)
        for pump in (to_broker, self._to_client(broker_reader, client_writer)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)

    async def _to_broker(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_writer: asyncio.StreamWriter
    ) -> None:
        pending = bytearray()
        while data := await reader.read(READ_SIZE):
            pending += data
            if SUBSCRIBE in self._take_packets(pending) and self._cutting_subscribers:
                self.subscriptions_cut += 1
                client_writer.close()
                break
            if not self._swallowing:
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(READ_SIZE):
            await self._answers.wait()
            writer.write(data)
            await writer.drain()
        writer.close()

    def _take_packets(self, pending: bytearray) -> list[int]:
        """Note the topic of each whole PUBLISH at the start of ``pending``, and remove the whole packets;
        their types."""
        types = []
        while len(pending) >= 2:
            length, shift, at = 0, 0, 1
            while at < len(pending):  # the remaining length: 7 bits a byte, least significant first
                length |= (pending[at] & 0x7F) << shift
                shift += 7
                at += 1
                if not pending[at - 1] & 0x80:
                    break
            else:
                return types
            if len(pending) < at + length:
                return types
            types.append(pending[0] >> 4)
            if pending[0] >> 4 == PUBLISH:
                topic_length = int.from_bytes(pending[at : at + 2], "big")
                self.published.append(pending[at + 2 : at + 2 + topic_length].decode())
            del pending[: at + length]
        return types
