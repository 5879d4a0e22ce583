"""The stream view in a real headless Chromium plays over WebRTC, and over the WebSocket when it cannot.

Over WebRTC the page gets clean frames as a video track and each frame's metadata on the "meta" data
channel; it draws the overlays and fills the track table itself, exactly as on the WebSocket path.
Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from server.webrtc import WebRTCConfig
from server.webrtc.routes import webrtc_config_key
from tests.support.browser import (
    CANVAS_STATS,
    PAUSE_ON_TRACKS,
    WAIT_MS,
    Console,
    open_page,
    require_browser,
    wait_for_changed_picture,
    wait_for_new_frame,
)
from tests.test_viewer import _record_tracks, _shown_frame_and_rows

require_browser()

Start = Callable[..., Awaitable[TestClient]]
ClientFactory = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

NO_WEBRTC = "delete window.RTCPeerConnection;"
FELL_BACK = "segcast: video over the WebSocket, not WebRTC: "


def fell_back_reasons(page: Any) -> list[str]:
    """The reasons ``page`` says (on its console) it fell back to the WebSocket for, as they come."""
    reasons: list[str] = []
    page.on("console", lambda m: m.text.startswith(FELL_BACK) and reasons.append(m.text.removeprefix(FELL_BACK)))
    return reasons


async def wait_for_transport(page: Any, badge: str) -> None:
    await page.wait_for_function(
        "(text) => document.querySelector('#stream-transport')?.textContent === text", arg=badge, timeout=WAIT_MS
    )


async def assert_live_frames_with_tracks(page: Any, client: TestClient, transport: str) -> None:
    """Two different, non-blank pictures arrive, and the table lists the tracks of the frame shown."""
    metadata: dict[int, list[int]] = {}
    async with client.ws_connect("/ws") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "subscribe", "streams": ["cam"], "image": "none"})
        recorder = asyncio.create_task(_record_tracks(ws, metadata))
        try:
            first = await wait_for_new_frame(page, "#video")
            assert first["std"] > 10, "frames are pictures, not blank"
            second = await wait_for_changed_picture(page, "#video", first)  # the picture changes as frames arrive
            assert second["std"] > 10, "frames are pictures, not blank"
            await page.wait_for_function(
                "() => document.querySelectorAll('#tracks tbody tr').length > 0", timeout=WAIT_MS
            )
            seq, rows, on_canvas = await _shown_frame_and_rows(page, metadata)
            assert rows == sorted(on_canvas) == sorted(metadata[seq]), "the table lists the frame's tracks, by id"
        finally:
            recorder.cancel()
    assert await page.evaluate("() => document.querySelector('#video').dataset.transport") == transport


async def test_stream_view_plays_over_webrtc_with_the_tracks_from_the_data_channel(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/#/stream/cam")
    await wait_for_transport(page, "WebRTC")
    await assert_live_frames_with_tracks(page, client, "webrtc")
    await page.wait_for_function(
        "() => document.querySelector('[data-stat=processed]')?.textContent.includes('fps')", timeout=WAIT_MS
    )
    await page.screenshot(path=screenshots / "webrtc.png")

    # Paused, the WebRTC picture stays while the video plays on, and the overlays are redrawn on it.
    await page.wait_for_function(PAUSE_ON_TRACKS, timeout=WAIT_MS)
    drawn = await page.evaluate(CANVAS_STATS, "#video")
    for name in ("masks", "boxes", "labels", "trails"):
        await page.uncheck(f"#overlays input[name={name}]")
    bare = await page.evaluate(CANVAS_STATS, "#video")
    assert bare["seq"] == drawn["seq"], "paused: the same frame"
    assert bare["hash"] != drawn["hash"], "turning the overlays off changes the picture"
    assert bare["std"] > 10

    # Back on the grid the player is closed; the stream view opens it again.
    await page.click("#nav-grid")
    await page.wait_for_function("() => document.querySelectorAll('video.rtc-source').length === 0", timeout=WAIT_MS)
    await page.click('.card[data-stream="cam"]')
    await page.click("#pause")
    await wait_for_transport(page, "WebRTC")
    await wait_for_new_frame(page, "#video", bare["seq"])
    assert console.errors == []


async def test_a_slow_answer_from_an_unanswering_stun_server_still_plays_over_webrtc(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """aiortc gathers its candidates before it answers, waiting ~5 s on a STUN server that does not
    answer; the view timed its first frame from the offer, so it always fell back to the WebSocket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, so nothing answers on it
        silent.bind(("127.0.0.1", 0))
        app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("cam", "scene:?seed=3"),)))
        app[webrtc_config_key] = WebRTCConfig.from_urls([f"stun:127.0.0.1:{silent.getsockname()[1]}"])
        client = await aiohttp_client(app)
        page = await browser.new_page()
        console = Console(page)
        fell_back: list[str] = []

        def on_console(message: Any) -> None:
            if message.text.startswith(FELL_BACK):
                fell_back.append(message.text)

        page.on("console", on_console)
        await page.goto(str(client.make_url("/#/stream/cam")))
        await wait_for_transport(page, "WebRTC")
        frame = await wait_for_new_frame(page, "#video")
    assert frame["std"] > 10
    assert fell_back == [] and console.errors == []


@pytest.mark.parametrize(
    ("path", "init_script"),
    [("/?transport=ws#/stream/cam", None), ("/#/stream/cam", NO_WEBRTC)],
    ids=["transport-ws", "no-rtcpeerconnection"],
)
async def test_stream_view_falls_back_to_the_websocket(
    start_server: Start, browser: Any, screenshots: Path, path: str, init_script: str | None
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    console = Console(page)
    if init_script:
        await page.add_init_script(init_script)
    await page.goto(str(client.make_url(path)))
    await assert_live_frames_with_tracks(page, client, "websocket")
    assert await page.text_content("#stream-transport") == "WebSocket"
    assert await page.locator("video.rtc-source").count() == 0
    await page.screenshot(path=screenshots / "websocket.png")
    assert console.errors == []


async def test_a_refused_offer_falls_back_to_the_websocket(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    console = Console(page)
    refused_once = asyncio.Event()

    async def refuse(route: Any) -> None:
        await route.fulfill(status=503, json={"error": "busy"})
        refused_once.set()

    await page.route("**/api/webrtc/play/**", refuse)
    await page.goto(str(client.make_url("/#/stream/cam")))
    # Offered once the page knows the server has the stream; then refused, the attempt is over at
    # once (its hidden <video> is gone), well before the 5 s without a frame.
    await asyncio.wait_for(refused_once.wait(), WAIT_MS / 1000)
    await page.wait_for_function("() => document.querySelectorAll('video.rtc-source').length === 0", timeout=4000)
    await assert_live_frames_with_tracks(page, client, "websocket")
    assert await page.text_content("#stream-transport") == "WebSocket"
    refused = "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
    assert console.errors == [refused]


async def test_with_access_control_the_stored_viewer_token_plays_over_webrtc(start_server: Start, browser: Any) -> None:
    viewer = "viewer-token-for-the-webrtc-viewer-test"
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3"),
        admin_tokens=("admin-token-for-the-webrtc-viewer-test",),
        viewer_tokens=(viewer,),
    )
    assert (await client.post("/api/webrtc/play/cam", json={})).status == 401
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(f"localStorage.setItem('segcast.token', {viewer!r})")
    await page.goto(str(client.make_url("/#/stream/cam")))
    await wait_for_transport(page, "WebRTC")
    await page.wait_for_function("() => document.querySelectorAll('#tracks tbody tr').length > 0", timeout=WAIT_MS)
    frame = await wait_for_new_frame(page, "#video")
    assert frame["std"] > 10
    assert console.errors == []
