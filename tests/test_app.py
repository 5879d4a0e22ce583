"""The HTTP side of the slice: viewer page, stream list, health, protocol errors, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
PIPELINE_THREADS = ("reader-", "inference", "encoder")


async def next_frame(ws) -> dict:  # type: ignore[no-untyped-def]
    async for message in ws:
        if message.type is WSMsgType.TEXT and json.loads(message.data)["type"] == "frame":
            return json.loads(message.data)
    raise AssertionError("socket closed before a frame arrived")


async def test_viewer_page_and_its_assets_are_served(start_server: Start) -> None:
    client = await start_server()
    page = await client.get("/")
    assert page.status == 200 and "<canvas" in await page.text()
    for asset in ("/static/app.js", "/static/style.css"):
        assert (await client.get(asset)).status == 200
    assert (await client.get("/healthz")).status == 200


async def test_stream_list_reports_state_and_counts(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"), StreamConfig("bad", "/no/such/file.mp4"))
    async with client.ws_connect("/ws") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "subscribe", "streams": ["live"]})
        await next_frame(ws)

        async def bad_failed() -> bool:  # a missing file is found missing by its reader, after it was added
            return bool((await (await client.get("/api/streams/bad")).json())["state"] == "failed")

        await eventually(bad_failed, what="the missing file's stream to fail")
        body = await (await client.get("/api/streams")).json()
    streams = {s["id"]: s for s in body["streams"]}
    assert streams["live"]["state"] == "live" and streams["live"]["frames_processed"] >= 1
    assert streams["bad"]["state"] == "failed" and "no such file" in streams["bad"]["error"]


async def test_malformed_messages_get_an_error_and_the_socket_stays_usable(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    async with client.ws_connect("/ws") as ws:
        await ws.receive_json()
        for bad in ("not json", "[1, 2]", '{"type": "dance"}', '{"type": "subscribe", "streams": "live"}'):
            await ws.send_str(bad)
            reply = await ws.receive_json()
            while reply["type"] in ("status", "added"):  # the stream's own news may come first
                reply = await ws.receive_json()
            assert reply["type"] == "error" and reply["message"]
        await ws.send_json({"type": "subscribe", "streams": ["live"]})
        assert (await next_frame(ws))["stream"] == "live"


async def test_shutdown_stops_every_pipeline_thread(start_server: Start) -> None:
    client = await start_server(StreamConfig("a", "scene:?seed=1"), StreamConfig("b", "scene:?seed=2"))
    async with client.ws_connect("/ws") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "subscribe", "streams": ["*"]})
        await next_frame(ws)
        await asyncio.wait_for(client.close(), timeout=10)
    alive = [t.name for t in threading.enumerate() if t.name.startswith(PIPELINE_THREADS)]
    assert alive == []


async def test_a_stream_moved_to_a_new_camera_no_longer_serves_the_old_ones_picture(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))

    async def snapshot_served() -> bool:
        return (await client.get("/api/streams/cam/snapshot.jpg")).status == 200

    await eventually(snapshot_served, what="a snapshot of the first camera")
    down = socket.socket()  # bound and never listening: a camera that is off, refusing connections
    down.bind(("127.0.0.1", 0))
    try:
        moved = await client.patch("/api/streams/cam", json={"uri": f"rtsp://127.0.0.1:{down.getsockname()[1]}/live"})
        assert moved.status == 200, await moved.text()
        snapshot = await client.get("/api/streams/cam/snapshot.jpg")
        tracks = await (await client.get("/api/streams/cam/tracks")).json()
    finally:
        down.close()
    assert snapshot.status == 503, "no frame yet: the new camera has sent none"
    assert tracks["seq"] is None and tracks["tracks"] == []


async def test_every_page_says_who_may_frame_it(start_server: Start) -> None:
    """publish.html (a page that shares a camera) was served from /static/ with no frame-ancestors:
    any site could frame it and steer clicks (clickjacking)."""
    client = await start_server(embed_origins=("https://dash.example.com",))
    for path in ("/", "/embed/cam", "/static/publish.html", "/static/fleet.html", "/static/history.html"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.headers["Content-Security-Policy"] == "frame-ancestors 'self' https://dash.example.com", path


async def test_static_serves_the_viewer_files_and_nothing_else(start_server: Start) -> None:
    client = await start_server()
    script = await client.get("/static/app.js")
    assert script.status == 200 and "javascript" in script.headers["Content-Type"]
    for path in ("/static/" + "a" * 300, "/static/..%2Fpyproject.toml", "/static/nope.js", "/static/"):
        assert (await client.get(path)).status == 404, path
