"""MJPEG viewers come and go cleanly: one that leaves frees its slot even when no frame is due, one
whose stream is removed gets the closing boundary, and a frame rate that would never send again is refused.

The app runs as ``segcast serve`` runs it, a handler left running when its client goes away
(tests/conftest.py): aiohttp's own test server cancels it, under which a viewer that left is let go
whatever the handler does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.delivery.viewer import ViewerLimits
from server.http.keys import hub_key
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
#: A stream that never has a frame: its file is missing, so its MJPEG viewers only ever wait.
NO_FRAMES = "/no/such/file.mp4"
#: How soon a client that left must be let go: the server looks every second; the rest is slack.
LET_GO_S = 10.0
READ_S = 30.0


def boundary_of(response: ClientResponse) -> bytes:
    return b"--" + response.headers["Content-Type"].split("boundary=")[1].encode()


async def first_part(response: ClientResponse) -> bytes:
    """Everything read until the first JPEG part is whole, by its ``Content-Length``."""
    data = b""
    while True:
        head, blank, body = data.partition(b"\r\n\r\n")
        if blank:
            [length] = [line.split(b":")[1] for line in head.split(b"\r\n") if line.startswith(b"Content-Length")]
            if len(body) >= int(length) + len(b"\r\n"):
                return data
        data += await asyncio.wait_for(response.content.readany(), timeout=READ_S)


async def first_frame(response: ClientResponse) -> None:
    """Read until a part carrying a frame (``X-Segcast-Seq``) is whole, past the notices before it."""
    data = b""
    while True:
        head, blank, body = data.partition(b"\r\n\r\n")
        if blank:
            [length] = [line.split(b":")[1] for line in head.split(b"\r\n") if line.startswith(b"Content-Length")]
            end = int(length) + len(b"\r\n")
            if len(body) >= end:
                if b"\r\nX-Segcast-Seq: " in head:
                    return
                data = body[end:]
                continue
        data += await asyncio.wait_for(response.content.readany(), timeout=READ_S)


async def counted_viewers(client: TestClient, stream_id: str) -> tuple[int, float]:
    """The viewers of ``stream_id`` as the hub counts them, and as /metrics reports them."""
    assert client.app is not None
    async with client.get("/metrics") as response:
        metrics = await response.text()
    prefix = f'segcast_viewers{{stream="{stream_id}"}} '
    [reported] = [line.removeprefix(prefix) for line in metrics.splitlines() if line.startswith(prefix)]
    return client.app[hub_key].viewer_count(stream_id), float(reported)


async def let_go(client: TestClient, stream_id: str) -> None:
    async def none_counted() -> bool:
        return await counted_viewers(client, stream_id) == (0, 0.0)

    await eventually(none_counted, timeout_s=LET_GO_S, what=f"the MJPEG viewer of {stream_id} that left to be let go")


async def test_a_client_that_leaves_a_stream_without_frames_frees_its_slot(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", NO_FRAMES), viewer_limits=ViewerLimits(max_viewers=1))
    gone = await client.get("/api/streams/cam/mjpeg")
    assert gone.status == 200
    assert await counted_viewers(client, "cam") == (1, 1.0)
    gone.close()
    await let_go(client, "cam")
    async with client.get("/api/streams/cam/mjpeg") as again:
        assert again.status == 200, "a new client is admitted in the slot the one that left held"


async def test_a_client_that_leaves_between_frames_at_a_low_max_fps_is_let_go(start_server: Start) -> None:
    """Left after a frame, not a notice: the next frame, which would fail to go out, is 100 s away."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    response = await client.get("/api/streams/cam/mjpeg?max_fps=0.01")
    assert response.status == 200
    await first_frame(response)
    response.close()
    await let_go(client, "cam")


async def test_a_max_fps_below_one_frame_per_100_s_is_refused(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", NO_FRAMES))
    for max_fps in ("1e-300", "0.009", "0", "nan", "61"):
        response = await client.get(f"/api/streams/cam/mjpeg?max_fps={max_fps}")
        assert response.status == 400, max_fps
        message = (await response.json())["error"]
        assert "max_fps" in message and "0.01" in message and "60" in message


async def test_a_max_fps_at_the_top_of_its_range_is_taken(start_server: Start) -> None:
    """60, as the refusal above names it; the range's other end, 0.01, is taken in the test before it."""
    client = await start_server(StreamConfig("cam", NO_FRAMES))
    async with client.get("/api/streams/cam/mjpeg?max_fps=60") as response:
        assert response.status == 200


async def test_a_removed_streams_mjpeg_ends_with_the_closing_boundary(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    response = await client.get("/api/streams/cam/mjpeg")
    boundary = boundary_of(response)
    data = await first_part(response)
    assert (await client.delete("/api/streams/cam")).status == 204
    data += await asyncio.wait_for(response.content.read(), timeout=READ_S)
    assert data.endswith(b"\r\n" + boundary + b"--\r\n"), data[-64:]
    assert data.count(boundary + b"--") == 1


async def test_picture_urls_offer_only_the_images_they_serve(start_server: Start) -> None:
    """``image=none`` (metadata only) is for WebSocket subscriptions: offering it here, then refusing it, sent
    a client round in a circle."""
    client = await start_server(StreamConfig("cam", NO_FRAMES))
    for url in ("/api/streams/cam/snapshot.jpg", "/api/streams/cam/mjpeg"):
        for image in ("raw", "none"):
            response = await client.get(url, params={"image": image})
            assert response.status == 400, (url, image)
            message = (await response.json())["error"]
            assert message == f"image: expected one of annotated, clean, got {image!r}", (url, message)
