"""A scripted MQTT 3.1.1 broker on 127.0.0.1, for what a real broker will not do on demand: end the
connection for a subscription (AWS IoT, for what an account's policy forbids), or refuse it.

It refuses a CONNECT of another protocol level than 3.1.1's (MQTT 5's) with return code 1 and ends the
connection, as MQTT 3.1.1 bids; it accepts every other connection and answers pings; what it does with a
SUBSCRIBE is `FakeBroker.on_subscribe`'s: ``"close"`` ends the connection before any answer, ``"refuse"``
answers the failure return code (0x80) for it. It confirms every publish, or with
``publishes_end_it`` ends the connection at each (a broker whose policy forbids the topic), or at
each whose topic holds ``ending_topics`` (a policy that forbids those alone).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from types import TracebackType
from typing import Literal

CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 1, 3, 8, 10, 12, 14
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
CONNACK_UNACCEPTABLE_PROTOCOL = b"\x20\x02\x00\x01"
MQTT_311 = 4  # CONNECT's protocol level, after the protocol name's length and "MQTT"
PINGRESP = b"\xd0\x00"
SUBACK_FAILURE = 0x80


class FakeBroker:
    """Listens on 127.0.0.1:`port` while in its ``async with`` block."""

    def __init__(
        self, on_subscribe: Literal["close", "refuse"], publishes_end_it: bool = False, ending_topics: str | None = None
    ) -> None:
        self.on_subscribe = on_subscribe
        self.publishes_end_it = publishes_end_it
        self.ending_topics = ending_topics
        self.port = 0
        #: Connections made to it, and SUBSCRIBE packets received, so far.
        self.connections = 0
        self.subscriptions = 0
        #: The topic of every PUBLISH received, in order.
        self.published: list[str] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FakeBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    def drop(self) -> None:
        """End every connection now, as a network failure would; new ones are taken."""
        for writer in self._writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            with suppress(ConnectionError, asyncio.IncompleteReadError):
                while (packet := await _packet(reader)) is not None:
                    kind, flags, body = packet
                    answer = self._answer(kind, flags, body)
                    if answer is None:
                        break
                    writer.write(answer)
                    await writer.drain()
                    if answer == CONNACK_UNACCEPTABLE_PROTOCOL:
                        break
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, kind: int, flags: int, body: bytes) -> bytes | None:
        """The bytes to answer a packet with (b"" for none); None to end the connection."""
        if kind == CONNECT:
            return CONNACK_ACCEPTED if body[6] == MQTT_311 else CONNACK_UNACCEPTABLE_PROTOCOL
        if kind == PUBLISH:
            topic_length = int.from_bytes(body[:2], "big")
            topic = body[2 : 2 + topic_length].decode()
            self.published.append(topic)
            if self.publishes_end_it or (self.ending_topics is not None and self.ending_topics in topic):
                return None
            qos = (flags >> 1) & 3
            packet_id = body[2 + topic_length : 4 + topic_length]
            return b"\x40\x02" + packet_id if qos == 1 else b""
        if kind == SUBSCRIBE:
            self.subscriptions += 1
            if self.on_subscribe == "close":
                return None
            return b"\x90\x03" + body[:2] + bytes([SUBACK_FAILURE])  # one topic filter, refused
        if kind == UNSUBSCRIBE:
            return b"\xb0\x02" + body[:2]
        if kind == PINGREQ:
            return PINGRESP
        if kind == DISCONNECT:
            return None
        return b""


async def _packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes] | None:
    """The next packet's type, flags and body; None at the end of the stream."""
    first = await reader.read(1)
    if not first:
        return None
    length, shift = 0, 0
    while True:  # the remaining length: 7 bits a byte, least significant first
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first[0] >> 4, first[0] & 0x0F, await reader.readexactly(length)
