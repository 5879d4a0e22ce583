"""The viewer in a real headless Chromium: live frames, the track table, toggles, add/remove, embed.

Screenshots of each step are kept under the pytest cache (``.pytest_cache/d/viewer-screenshots``) as
test artifacts. Every wait is on something the page shows, with a deadline; none is a fixed sleep.
The pages of streams that are not well, phones and proxies are in test_viewer_states and _proxy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.support.browser import (
    CANVAS_STATS,
    KEEP_FRAME_META,
    PAUSE_ON_TRACKS,
    WAIT_MS,
    Console,
    open_page,
    require_browser,
    wait_for_changed_picture,
    wait_for_new_frame,
    wait_for_text,
)

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)


async def test_grid_and_stream_view_show_live_frames_and_the_tracks_of_each_frame(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("other", "scene:?seed=4"))
    metadata: dict[int, list[int]] = {}
    async with client.ws_connect("/ws") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "subscribe", "streams": ["cam"], "image": "none"})
        recorder = asyncio.create_task(_record_tracks(ws, metadata))
        page, console = await open_page(browser, client, "/")
        thumbnail = await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')
        assert thumbnail["std"] > 10
        await page.wait_for_selector('.card[data-stream="other"] .badge.state-live', timeout=WAIT_MS)
        await page.screenshot(path=screenshots / "grid.png")

        await page.click('.card[data-stream="cam"]')
        await page.wait_for_selector("#stream-view:not([hidden])", timeout=WAIT_MS)
        first = await wait_for_new_frame(page, "#video")
        second = await wait_for_changed_picture(page, "#video", first)  # the picture changes as frames arrive
        assert first["std"] > 10 and second["std"] > 10, "frames are pictures, not blank"

        await page.wait_for_function("() => document.querySelectorAll('#tracks tbody tr').length > 0", timeout=WAIT_MS)
        shown = await _shown_frame_and_rows(page, metadata)
        seq, rows, on_canvas = shown
        assert rows == sorted(on_canvas) == sorted(metadata[seq]), "the table lists the frame's tracks, by id"
        await page.wait_for_function(
            "() => document.querySelector('[data-stat=processed]')?.textContent.includes('fps')", timeout=WAIT_MS
        )
        await page.screenshot(path=screenshots / "stream.png")
        recorder.cancel()
    assert console.errors == []


async def _record_tracks(ws: Any, metadata: dict[int, list[int]]) -> None:
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            event = json.loads(message.data)
            if event["type"] == "frame":
                metadata[event["seq"]] = [track["id"] for track in event["tracks"]]


async def _shown_frame_and_rows(page: Any, metadata: dict[int, list[int]]) -> tuple[int, list[int], list[int]]:
    """The frame on the canvas with its table rows, read at one instant, once its metadata was recorded."""
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while True:
        seq, rows, on_canvas = await page.evaluate(
            """() => [Number(document.querySelector('#video').dataset.seq),
                      [...document.querySelectorAll('#tracks tbody tr')].map((r) => Number(r.dataset.track)),
                      (document.querySelector('#video').dataset.tracks || '').split(',').filter(Boolean).map(Number)]"""
        )
        if seq in metadata and rows:
            return seq, rows, on_canvas
        assert asyncio.get_running_loop().time() < deadline, "no frame shown whose metadata the test saw"
        await page.wait_for_function(
            "(seq) => Number(document.querySelector('#video').dataset.seq) !== seq", arg=seq, timeout=WAIT_MS
        )


async def test_overlay_toggles_and_highlight_change_what_is_drawn(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/#/stream/cam")
    await page.wait_for_function(PAUSE_ON_TRACKS, timeout=WAIT_MS)
    drawn = await page.evaluate(CANVAS_STATS, "#video")
    for name in ("masks", "boxes", "labels", "trails"):
        await page.uncheck(f"#overlays input[name={name}]")
    bare = await page.evaluate(CANVAS_STATS, "#video")
    await page.screenshot(path=screenshots / "overlays-off.png")
    assert bare["seq"] == drawn["seq"], "paused: the same frame"
    assert bare["hash"] != drawn["hash"], "turning the overlays off changes the picture"
    await page.check("#overlays input[name=boxes]")
    boxes_only = await page.evaluate(CANVAS_STATS, "#video")
    assert boxes_only["hash"] not in (bare["hash"], drawn["hash"])

    row = page.locator("#tracks tbody tr").first
    await row.hover()
    assert "highlight" in (await row.get_attribute("class") or "")
    highlighted = await page.evaluate(CANVAS_STATS, "#video")
    assert highlighted["hash"] != boxes_only["hash"], "hovering a track highlights it on the video"
    await page.screenshot(path=screenshots / "highlight.png")
    assert console.errors == []


#: Where on the screen to click a track of the frame shown: the middle of its box, in the picture as
#: object-fit: contain places it; the track farthest from the middle, whose box is the smallest there.
TRACK_ON_SCREEN = """() => {
  const canvas = document.querySelector("#video");
  const meta = window.frameMeta.get(canvas.dataset.seq);
  const rect = canvas.getBoundingClientRect();
  const scale = Math.min(rect.width / meta.width, rect.height / meta.height);
  const [width, height] = [meta.width * scale, meta.height * scale];
  const area = ([x1, y1, x2, y2]) => (x2 - x1) * (y2 - y1);
  const under = (x, y) => meta.tracks
    .filter(({ box: [x1, y1, x2, y2] }) => x >= x1 && x <= x2 && y >= y1 && y <= y2)
    .sort((a, b) => area(a.box) - area(b.box))[0];
  const [track] = meta.tracks
    .map(({ id, box: [x1, y1, x2, y2] }) => ({ id, x: (x1 + x2) / 2, y: (y1 + y2) / 2 }))
    .filter((t) => under(t.x, t.y).id === t.id)
    .sort((a, b) => Math.abs(b.x - meta.width / 2) - Math.abs(a.x - meta.width / 2));
  return {
    letterboxed: width < rect.width - 1 || height < rect.height - 1,
    id: track.id,
    x: rect.left + (rect.width - width) / 2 + (track.x / meta.width) * width,
    y: rect.top + (rect.height - height) / 2 + (track.y / meta.height) * height,
  };
}"""
HIGHLIGHTED_ROWS = "() => [...document.querySelectorAll('#tracks tbody tr.highlight')].map((row) => row.dataset.track)"


async def test_a_click_pins_a_track_on_a_letterboxed_picture_and_in_the_table_as_it_updates(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page(viewport={"width": 1600, "height": 600})  # the picture is capped in height
    console = Console(page)
    await page.add_init_script(KEEP_FRAME_META)
    await page.goto(str(client.make_url("/?transport=ws#/stream/cam")))
    await page.wait_for_function(PAUSE_ON_TRACKS, timeout=WAIT_MS)
    target = await page.evaluate(TRACK_ON_SCREEN)
    assert target["letterboxed"]
    await page.mouse.click(target["x"], target["y"])
    await page.mouse.move(0, 0)  # off the video: only the pinned track stays highlighted
    await page.wait_for_function(f"() => ({HIGHLIGHTED_ROWS})().join() === '{target['id']}'", timeout=WAIT_MS)
    await page.mouse.click(target["x"], target["y"])  # the same track again: unpinned
    await page.mouse.move(0, 0)
    await page.wait_for_function(f"() => ({HIGHLIGHTED_ROWS})().length === 0", timeout=WAIT_MS)

    # A row pressed while a frame comes in, and released after it, is still clicked.
    await page.click("#pause")
    row = page.locator("#tracks tbody tr").first
    track = await row.get_attribute("data-track")
    await row.hover()
    shown = await page.get_attribute("#video", "data-seq")
    await page.mouse.down()
    await wait_for_new_frame(page, "#video", shown)
    await page.mouse.up()
    await page.mouse.move(0, 0)
    await page.wait_for_function(f"() => ({HIGHLIGHTED_ROWS})().join() === '{track}'", timeout=WAIT_MS)
    assert console.errors == []


async def test_a_camera_is_added_and_removed_through_the_form(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server()
    # Over the WebSocket: the stream view's WebRTC offer, still being answered when the stream is
    # removed, would be refused (404) or aborted by chance (tests/test_viewer_webrtc.py has WebRTC).
    page, console = await open_page(browser, client, "/?transport=ws")
    await page.wait_for_selector("#grid-empty:not([hidden])", timeout=WAIT_MS)
    await page.fill("#add-form input[name=id]", "yard")
    await page.fill("#add-form input[name=uri]", "scene:?seed=5")
    await page.click("#add-form button[type=submit]")
    await page.wait_for_selector('.card[data-stream="yard"] .badge.state-live', timeout=WAIT_MS)
    streams = await (await client.get("/api/streams")).json()
    assert [s["id"] for s in streams["streams"]] == ["yard"]
    await page.screenshot(path=screenshots / "added.png")

    await page.fill("#add-form input[name=id]", "yard")
    await page.fill("#add-form input[name=uri]", "scene:?seed=6")
    await page.click("#add-form button[type=submit]")
    await page.wait_for_function(
        "() => document.querySelector('#add-error').textContent.includes('already exists')", timeout=WAIT_MS
    )

    await page.click('.card[data-stream="yard"]')
    await page.click("#remove-stream")
    await page.click("#remove-stream")
    await page.wait_for_selector("#grid-view:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_selector('.card[data-stream="yard"]', state="detached", timeout=WAIT_MS)
    assert (await (await client.get("/api/streams")).json())["streams"] == []
    assert console.errors == ["Failed to load resource: the server responded with a status of 409 (Conflict)"]


async def test_a_camera_added_but_not_saved_is_shown_as_added(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """The config file was edited by hand: the save is refused (409), the stream is added all the same.
    The form must say both, not keep the camera in it as if nothing had happened."""
    path = tmp_path / "segcast.toml"
    path.write_text("[server]\nsave_config = true\n")
    client = await start_server(config_path=path, save_config=True)
    page, console = await open_page(browser, client, "/?transport=ws")
    await page.wait_for_selector("#grid-empty:not([hidden])", timeout=WAIT_MS)
    path.write_text("[server]\nsave_config = true\nport = 8081\n")
    await page.fill("#add-form input[name=id]", "yard")
    await page.fill("#add-form input[name=uri]", "scene:?seed=5")
    await page.click("#add-form button[type=submit]")
    await wait_for_text(page, "#add-error", "in effect, but not saved")
    await page.wait_for_selector('.card[data-stream="yard"]', timeout=WAIT_MS)
    assert await page.input_value("#add-form input[name=id]") == ""
    assert await page.input_value("#add-form input[name=uri]") == ""
    assert await page.is_checked("#add-form input[name=persist]"), "save_config: every change is saved"
    assert console.errors == ["Failed to load resource: the server responded with a status of 409 (Conflict)"]


async def test_embed_page_shows_one_stream_in_an_iframe(start_server: Start, browser: Any, screenshots: Path) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), embed_origins=("https://dash.example.com",))
    response = await client.get("/embed/cam")
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'self' https://dash.example.com"
    page, console = await open_page(browser, client, "/embed/cam")
    assert await page.locator("header").count() == 0, "no chrome around the video"
    frame = await wait_for_new_frame(page, "#video")
    assert frame["std"] > 10
    size = await page.evaluate("() => [document.querySelector('#video').width, innerWidth, innerHeight]")
    assert size[0] == 640
    await page.screenshot(path=screenshots / "embed.png")

    snapshot = client.make_url("/api/streams/cam/snapshot.jpg")
    await page.set_content(
        f'<iframe id="f" src="{client.make_url("/embed/cam")}" width="480" height="288"></iframe>'
        f'<img id="i" src="{snapshot}">'
    )
    await page.wait_for_function("() => document.getElementById('i').naturalWidth === 640", timeout=WAIT_MS)
    assert console.errors == []


async def test_viewer_reconnects_by_itself_when_the_server_restarts(browser: Any, unused_tcp_port: int) -> None:
    settings = Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("cam", "scene:?seed=3"),))
    server = TestServer(create_app(settings), host="127.0.0.1", port=unused_tcp_port)
    await server.start_server()
    page = await browser.new_page()
    console = Console(page)
    try:
        await page.goto(str(server.make_url("/#/stream/cam")))
        before = await wait_for_new_frame(page, "#video")
        await server.close()
        await page.wait_for_selector("#connection.state-failed", timeout=WAIT_MS)
        server = TestServer(create_app(settings), host="127.0.0.1", port=unused_tcp_port)
        await server.start_server()
        await page.wait_for_selector("#connection.state-live", timeout=WAIT_MS)
        await wait_for_new_frame(page, "#video", before["seq"])
    finally:
        await server.close()
    # While the server is away, the browser reports its failed reconnection attempts; nothing else.
    assert [e for e in console.errors if "WebSocket" not in e and "ERR_CONNECTION_REFUSED" not in e] == []
