"""Closes the server starts end, whether or not the client reads: a client over its rate (1008), one whose
token expired (4401), one too far behind (1013), one whose sender failed (1011).

aiohttp's close sends the close frame after whatever is queued for the client and waits for it to go
out, with the socket's pings already stopped: to a client that stopped reading, that was for as long as
it stayed connected, its viewer slot and socket held. Such a client is cut off now, once it has not
taken the close frame within `CLOSE_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.delivery.viewer import MAX_PENDING_EVENTS, Viewer, ViewerLimits
from server.http.access.auth import policy_key
from server.http.access.tokens import Role
from server.http.keys import hub_key, websockets_key
from server.http.viewers import close_websocket
from server.http.ws import CLIENT_MESSAGE_BURST, TOO_SLOW_REASON
from server.sources import StreamState
from tests.support.polling import eventually
from tests.support.raw_websocket import websocket_handshake

Start = Callable[..., Awaitable[TestClient]]
#: A stream that never has a frame: what fills a stalled client's socket here is events, sent at once.
NO_FRAMES = "/no/such/file.mp4"
#: Events of about a kilobyte each, far more than the kernel holds for a client that does not read
#: (`TCP_NOTSENT_LOWAT`), and far fewer than close a viewer as too slow (`MAX_PENDING_EVENTS`).
STALLING_EVENTS = 400
#: Only a close that never ends takes this long: the server gives a client 5 s to take its close frame.
LET_GO_S = 60.0
RECEIVE_TIMEOUT_S = 30.0
ADMIN_TOKEN = "admin-token-0123456789abcdef"


def stalled_websocket(host: str, port: int, query: str = "") -> socket.socket:
    """A ``/ws`` client that reads nothing after the handshake, with a receive buffer too small for much."""
    return websocket_handshake(host, port, query, receive_buffer=4096)


def text_frame(text: str) -> bytes:
    """One masked text frame, as a client sends it."""
    payload, mask = text.encode(), os.urandom(4)
    assert len(payload) < 126, "one short frame"
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def stall(client: TestClient, query: str = "") -> socket.socket:
    """A connected client that stopped reading, whose socket holds more than it will ever take: its
    sender waits on it."""
    assert client.app is not None
    hub, websockets = client.app[hub_key], client.app[websockets_key]
    sock = await asyncio.to_thread(stalled_websocket, client.server.host, client.server.port, query)

    async def open_socket() -> bool:
        return len(websockets) == 1

    await eventually(open_socket, what="the client's WebSocket to open")
    for n in range(STALLING_EVENTS):
        hub.announce({"type": "status", "v": 1, "stream": f"gone{n}", "state": "failed", "error": "x" * 1000})
    [connection] = websockets.values()

    async def sender_waits() -> bool:
        return connection.transport is not None and connection.transport.get_write_buffer_size() > 64 * 1024

    await eventually(sender_waits, what="the sender to wait on the client that does not read")
    return sock


async def let_go(client: TestClient) -> None:
    assert client.app is not None
    hub, websockets = client.app[hub_key], client.app[websockets_key]

    async def viewer_and_socket_gone() -> bool:
        return not hub.viewers and not websockets

    await eventually(viewer_and_socket_gone, timeout_s=LET_GO_S, what="the server to let the stalled client go")


async def test_a_client_over_its_message_rate_that_stopped_reading_is_let_go(start_server: Start) -> None:
    """It is closed with 1008; the close frame waits behind what it never read, and it is cut off."""
    client = await start_server(StreamConfig("cam", NO_FRAMES), viewer_limits=ViewerLimits(max_viewers=1))
    sock = await stall(client)
    try:
        sock.sendall(text_frame('{"type": "subscribe", "streams": []}') * (CLIENT_MESSAGE_BURST + 10))
        await let_go(client)
        again = await client.ws_connect("/ws")  # the slot of max_viewers is free
        assert (await again.receive_json(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
        await again.close()
    finally:
        sock.close()


async def test_a_client_whose_token_expired_and_that_stopped_reading_is_let_go(start_server: Start) -> None:
    """It is closed with 4401; the close frame waits behind what it never read, and it is cut off."""
    client = await start_server(StreamConfig("cam", NO_FRAMES), admin_tokens=(ADMIN_TOKEN,))
    assert client.app is not None
    expires = int(time.time()) + 6
    token = client.app[policy_key].sign_until(Role.VIEWER, expires)
    sock = await stall(client, f"?token={token}")
    try:
        assert time.time() < expires, "stalled only after the token expired: the test proves nothing"
        await let_go(client)
        assert time.time() >= expires
    finally:
        sock.close()


async def test_a_client_too_far_behind_is_sent_what_it_was_owed_then_closed_with_1013(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", NO_FRAMES))
    assert client.app is not None
    hub = client.app[hub_key]

    async def cam_failure_announced() -> bool:
        return hub.states.get("cam", (None, None))[0] is StreamState.FAILED

    # Before the client joins: announced after it, the failure would be one more message owed to it.
    await eventually(cam_failure_announced, what="the stream's failure announced")
    ws = await client.ws_connect("/ws")
    assert (await ws.receive_json(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
    for n in range(MAX_PENDING_EVENTS + 1):  # in one turn of the loop: the sender takes none meanwhile
        hub.announce({"type": "status", "v": 1, "stream": f"gone{n}", "state": "failed", "error": None})
    received = 0
    while (message := await ws.receive(timeout=RECEIVE_TIMEOUT_S)).type is WSMsgType.TEXT:
        received += 1
    assert received == MAX_PENDING_EVENTS
    assert (message.type, message.data, message.extra) == (
        WSMsgType.CLOSE,
        WSCloseCode.TRY_AGAIN_LATER,
        TOO_SLOW_REASON,
    )
    async with client.get("/metrics") as response:
        assert "segcast_viewers_closed_too_slow_total 1\n" in await response.text()
    await let_go(client)


async def test_a_viewer_whose_sender_fails_is_closed_with_1011(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that failed (a bug) left its client connected and sent nothing, until the client left."""

    async def failing_take(self: Viewer) -> None:
        raise RuntimeError("a bug in the sender")

    client = await start_server(StreamConfig("cam", NO_FRAMES))
    monkeypatch.setattr(Viewer, "take", failing_take)
    ws = await client.ws_connect("/ws")
    message = await ws.receive(timeout=RECEIVE_TIMEOUT_S)
    assert (message.type, message.data) == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)
    assert "reconnect" in message.extra
    await let_go(client)


async def test_a_close_at_shutdown_of_a_socket_already_closing_ends_its_connection_at_once(start_server: Start) -> None:
    """aiohttp's second close of a socket returns at once, the first still waiting on a client that stopped
    reading: a shutdown racing a 1013 close left the connection open for that close's whole time-out."""
    client = await start_server(StreamConfig("cam", NO_FRAMES))
    assert client.app is not None
    sock = await stall(client)
    try:
        [(ws, connection)] = client.app[websockets_key].items()
        too_slow = asyncio.create_task(close_websocket(ws, connection, WSCloseCode.TRY_AGAIN_LATER, TOO_SLOW_REASON))

        async def closing() -> bool:
            return ws.closed

        await eventually(closing, what="the 1013 close to begin")
        await close_websocket(ws, connection, WSCloseCode.GOING_AWAY, "server shutdown")
        assert connection.transport is None or connection.transport.is_closing()
        await too_slow
    finally:
        sock.close()
    await let_go(client)
