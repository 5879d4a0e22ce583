"""A WebSocket client made by hand on a plain socket, for tests that must misbehave at the byte level.

aiohttp's client always reads and always closes politely; these sockets can stop reading for good or
vanish in the middle of a frame, which is what a server has to survive.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


def raw_websocket(host: str, port: int, subscribe: dict[str, Any], receive_buffer: int | None = None) -> socket.socket:
    """A connected, subscribed ``/ws`` client; nothing is read after the handshake.

    A small ``receive_buffer`` makes the server's writes back up soon when the test never reads.
    """
    sock = websocket_handshake(host, port, receive_buffer=receive_buffer)
    payload = json.dumps({"type": "subscribe", **subscribe}).encode()
    assert len(payload) < 1 << 16, "one short text frame"
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(struct.pack("!BBH", 0x81, 0x80 | 126, len(payload)) + mask + masked)
    return sock


def websocket_handshake(host: str, port: int, query: str = "", receive_buffer: int | None = None) -> socket.socket:
    """A ``/ws{query}`` client past its handshake, having read nothing more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws{query} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock
