"""aiortc's tasks that fail because their peer vanished are no ERROR in the log; other failures still are."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

from server.webrtc.vanished_peers import quiet_vanished_peers


async def failed_and_dropped(coroutine: object) -> None:
    """Run ``coroutine`` as a task nobody awaits, as aiortc runs its own, and let it go once it failed:
    asyncio then reports "Task exception was never retrieved" to the loop's exception handler."""
    task = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
    await asyncio.wait([task])
    del task
    gc.collect()


def unconnected_dtls() -> RTCDtlsTransport:
    """A DTLS transport never connected: sending on it fails as on one whose peer has gone."""
    return RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def test_an_aiortc_send_whose_peer_is_gone_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    restore = quiet_vanished_peers(asyncio.get_running_loop())
    try:
        with caplog.at_level(logging.DEBUG):
            await failed_and_dropped(unconnected_dtls()._send_data(b"frame"))
    finally:
        restore()
    assert errors(caplog) == []
    assert any("its peer went" in record.getMessage() for record in caplog.records)


async def test_without_the_handler_the_same_failure_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """What the handler is for: asyncio's own handler logs it at ERROR."""
    with caplog.at_level(logging.DEBUG):
        await failed_and_dropped(unconnected_dtls()._send_data(b"frame"))
    assert any("never retrieved" in message for message in errors(caplog))


async def test_a_failure_outside_aiortc_is_still_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def send() -> None:
        raise ConnectionError("segcast's own send failed")

    restore = quiet_vanished_peers(asyncio.get_running_loop())
    try:
        await failed_and_dropped(send())
    finally:
        restore()
    assert any("never retrieved" in message for message in errors(caplog))


async def test_the_server_logs_a_vanished_peers_failure_below_error(
    start_server: Callable[..., Awaitable[TestClient]], caplog: pytest.LogCaptureFixture
) -> None:
    """The handler is the running server's, as long as it serves WebRTC."""
    await start_server()
    await failed_and_dropped(unconnected_dtls()._send_data(b"frame"))
    assert errors(caplog) == []
