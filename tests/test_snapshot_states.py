"""A snapshot never passes an old frame off as the scene now.

While a stream has no current picture (its camera reconnecting, its file ended), a snapshot answers
503 with ``Retry-After``, its state in ``X-Segcast-State`` and a message saying why: by the same rule
by which its MJPEG feed sends notices instead of frames. It was a 200 with the last frame before the
camera went away, which looks like a working camera to a program polling it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.http import pictures
from server.http.keys import hub_key, manager_key
from server.sources.base import StreamState
from tests.support.mjpeg_server import MjpegServer
from tests.support.polling import eventually
from tests.test_mjpeg_notice import Parts, notice_of
from tests.test_openapi_spec import check_answer, load_spec

Start = Callable[..., Awaitable[TestClient]]
SNAPSHOT = "/api/streams/{stream}/snapshot.jpg"


async def state_of(client: TestClient, stream_id: str, state: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
        return body if body["state"] == state else None

    return await eventually(reached, timeout_s=60, what=f"{stream_id} {state}")


async def snapshot_served(client: TestClient, stream_id: str) -> bool:
    return (await client.get(f"/api/streams/{stream_id}/snapshot.jpg")).status == 200


async def assert_no_current_picture(client: TestClient, stream_id: str, state: str) -> str:
    """The stream's snapshot is the documented 503 for ``state``; its message."""
    response = await client.get(f"/api/streams/{stream_id}/snapshot.jpg")
    body = await response.read()
    check_answer(load_spec(), "get", SNAPSHOT, response, body)
    assert response.status == 503, f"a frame of a stream that is {state}: {response.headers}"
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Segcast-State"] == state
    message: str = (await response.json())["error"]
    assert message.startswith(f"stream {stream_id!r} has no current picture: {state}"), message
    return message


async def test_a_snapshot_of_a_camera_that_went_away_says_it_is_reconnecting(start_server: Start) -> None:
    camera = MjpegServer(fps=10, width=160).start()
    try:
        client = await start_server(StreamConfig("mj", camera.url()))
        await eventually(lambda: snapshot_served(client, "mj"), timeout_s=60, what="a snapshot of the camera")
        await asyncio.to_thread(camera.close)  # the camera is switched off: its connections refused
        await state_of(client, "mj", "reconnecting")
        message = await assert_no_current_picture(client, "mj", "reconnecting")
        assert "next attempt at" in message, message
        feed = Parts(await client.get("/api/streams/mj/mjpeg"))
        # Its first parts are notices: the last frame before the camera went away, which the hub offers
        # a new viewer at once, was the second part, sent as a frame of the scene now.
        first_parts = [await feed.next() for _ in range(2)]
        assert all(notice_of("reconnecting")(part) for part in first_parts), [part[0] for part in first_parts]
    finally:
        await asyncio.to_thread(camera.close)


async def test_a_snapshot_of_an_ended_file_says_so_until_its_frames_return(
    start_server: Start, numbered_video: Path
) -> None:
    client = await start_server(StreamConfig("clip", str(numbered_video)))  # played once, not looped
    await state_of(client, "clip", "ended")
    tracks = await (await client.get("/api/streams/clip/tracks")).json()
    assert tracks["seq"] is not None, "the file ended before a frame of it was processed"
    await assert_no_current_picture(client, "clip", "ended")
    assert (await client.patch("/api/streams/clip", json={"loop": True})).status == 200
    await eventually(lambda: snapshot_served(client, "clip"), timeout_s=60, what="a snapshot of the looping file")


@pytest.mark.parametrize("state", list(StreamState))
def test_a_frame_shown_unanalysed_is_the_scene_now_only_while_its_stream_is_live(state: StreamState) -> None:
    """While inference is unavailable a live stream's frames are shown unanalysed, and are its picture; the
    last of them is no picture of the scene once the camera has gone (its manager is not asked: it would
    say no current picture while inference is unavailable, live or not)."""
    app = web.Application()
    unanalysed = SimpleNamespace(result=SimpleNamespace(analysed=False))
    app[hub_key] = SimpleNamespace(latest={"cam": unanalysed})  # type: ignore[assignment]
    app[manager_key] = SimpleNamespace(is_current=lambda info: False)  # type: ignore[assignment]
    info = SimpleNamespace(stream_id="cam", state=state)
    assert pictures._has_current_picture(app, info) is (state is StreamState.LIVE)  # type: ignore[arg-type]
