"""Viewers refused or disconnected by a limit are logged one line per limit and minute, not one each:
a client retrying in a loop wrote a WARNING per attempt (300 refusals, 300 lines)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import WSCloseCode, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.delivery.viewer import ViewerLimits
from server.http.ws import CLIENT_MESSAGE_BURST

Start = Callable[..., Awaitable[TestClient]]
NO_FRAMES = "/no/such/file.mp4"
ATTEMPTS = 20
RECEIVE_TIMEOUT_S = 30.0


def warnings_saying(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and words in r.getMessage()]


async def test_viewers_refused_by_a_limit_are_one_warning_line_not_one_each(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_server(StreamConfig("cam", NO_FRAMES), viewer_limits=ViewerLimits(max_viewers=0))
    for _ in range(ATTEMPTS):
        async with client.get("/api/streams/cam/mjpeg") as response:
            assert response.status == 503
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/ws")
        assert refused.value.status == 503
    [line] = warnings_saying(caplog, "refused a viewer")
    assert "max_viewers" in line.getMessage() and "127.0.0.1" in line.getMessage()


async def test_clients_disconnected_for_their_rate_are_one_warning_line_not_one_each(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_server(StreamConfig("cam", NO_FRAMES))
    for _ in range(5):
        ws = await client.ws_connect("/ws")
        for _ in range(CLIENT_MESSAGE_BURST + 1):
            await ws.send_str('{"type": "subscribe", "streams": []}')
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT_S)).type is WSMsgType.TEXT:
            pass
        assert (message.type, message.data) == (WSMsgType.CLOSE, WSCloseCode.POLICY_VIOLATION)
    [line] = warnings_saying(caplog, "disconnecting")
    assert "too many messages" in line.getMessage()
