"""Live viewers over HTTP, the WebSocket feed's and the MJPEG feed's alike: what they may ask for, how
they are let in, and how the server lets a WebSocket go.

Both feeds hold a viewer to the same frame rates (`MIN_FPS`, `MAX_FPS`) and answer the limits of
``[server] max_viewers`` the same way (`join_viewer`). A WebSocket the server ends (a client over its
rate, too far behind, its token expired, shutdown) ends through `close_websocket`: aiohttp's close
sends what is queued before the close frame, and waits for it without end when the client has
stopped reading, its viewer slot and socket held for as long as the client stays connected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, web

from server.delivery.viewer import Viewer, ViewerLimitError
from server.http.errors import error
from server.http.network.serving import ViewerConnection

if TYPE_CHECKING:
    from server.delivery.hub import Hub

log = logging.getLogger(__name__)

#: One frame per 100 s: below that an ``<img>`` is a snapshot that never changes, and ``1e-300``
#: would send one frame and then nothing for ever, its connection held open for nothing.
MIN_FPS = 0.01
MAX_FPS = 60.0
VIEWER_RETRY_S = 10
#: How long a client is given to take the close frame the server sends it before its connection is
#: reset: a client reading at all takes it within a round trip and what was queued before it.
CLOSE_TIMEOUT_S = 5.0


def join_viewer(hub: Hub, viewer: Viewer) -> None:
    """Add a WebSocket or MJPEG viewer to ``hub``, or refuse it: 503 at the server's limit, 429 at its address's.

    The hub counts and logs each refusal (`Hub.join`).
    """
    try:
        hub.join(viewer)
    except ViewerLimitError as exc:
        kind = web.HTTPServiceUnavailable if exc.setting == "max_viewers" else web.HTTPTooManyRequests
        raise error(kind, str(exc), **{"Retry-After": str(VIEWER_RETRY_S)}) from None


async def close_websocket(
    ws: web.WebSocketResponse[bool],
    connection: ViewerConnection,
    code: int,
    reason: str,
    timeout_s: float = CLOSE_TIMEOUT_S,
) -> None:
    """Close ``ws`` with ``code`` and ``reason``; a client that does not take the close frame within
    ``timeout_s`` is cut off (`cut_off_if_abandoned`), as is one whose close ended abnormally.

    The connection is over when this returns, however the close went: one still open (another task's
    close of it under way) is aborted. Raises RuntimeError where ``ws`` is not prepared yet.
    """
    try:
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()), timeout_s)
    except TimeoutError:
        log.info("a WebSocket client did not take its close frame (%d) within %.1f s; cutting it off", code, timeout_s)
    finally:  # a caller cancelled mid-close leaves aiohttp's abnormal closure behind it too
        cut_off_if_abandoned(ws, connection)
    transport = connection.transport
    if transport is not None and not transport.is_closing():
        transport.abort()


def cut_off_if_abandoned(ws: web.WebSocketResponse[bool], connection: ViewerConnection) -> None:
    """Reset ``connection`` if ``ws`` ended abnormally: it missed its pings, or its close frame was not
    taken. aiohttp then closes the transport politely, which sends what is queued first: to a client
    that stopped reading, never (`ViewerConnection.reset`)."""
    if ws.close_code == WSCloseCode.ABNORMAL_CLOSURE:
        connection.reset()


class WebSocketCloser:
    """The close of one viewer's WebSocket, for whichever task decides on it; its handler waits for it.

    The sender (a viewer too far behind, or failed), the handler itself (a client over its rate) and
    the token's expiry each start the close here (`close`), and the handler, whose reading ends as the
    close begins, waits for it to finish (`finished`) before it lets the viewer go. Closed by its own
    task, the close is never cut short by the end of the task that asked for it.
    """

    def __init__(self, ws: web.WebSocketResponse[bool], connection: ViewerConnection) -> None:
        self._ws = ws
        self._connection = connection
        self._closing: asyncio.Task[None] | None = None
        self._finished = False

    def close(self, code: int, reason: str) -> None:
        """Start closing with ``code`` and ``reason``, unless a close was started already or the handler ended."""
        if self._closing is None and not self._finished:
            self._closing = asyncio.create_task(
                close_websocket(self._ws, self._connection, code, reason), name="websocket-close"
            )

    async def finished(self) -> None:
        """For the handler as it ends: wait for a close under way (`CLOSE_TIMEOUT_S` at most), and cut off
        a connection that ended abnormally otherwise (its pings missed)."""
        self._finished = True
        if self._closing is not None:
            await self._closing
        cut_off_if_abandoned(self._ws, self._connection)


#: The closer of a request's WebSocket, once it is open: how the token's expiry closes it.
websocket_closer_key = web.RequestKey("websocket_closer", WebSocketCloser)
