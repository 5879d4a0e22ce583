"""The publish page never leaves the camera on for nothing: not after a publish that failed once the
camera was open, and not after the server ended the published stream, which the page says at once.
It publishes one camera at a time, however often "Use my camera" is pressed, and keeps no WebSocket
open once its camera is off. Its links away open a new tab while the camera is on, a camera turned off
leaves nothing of its playback on the next one, and a server that cannot keep up says so there.

The page's getUserMedia is wrapped to keep every stream it gave out, so the test can count the camera
tracks still live (a live track is the camera's light on).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.http.keys import hub_key
from tests import test_overload, test_webrtc_browser
from tests.support.browser import WAIT_MS, wait_for_new_frame, wait_for_text
from tests.support.polling import eventually
from tests.test_overload import SlowModel
from tests.test_webrtc_browser import camera_browser

Start = Callable[..., Awaitable[TestClient]]

fake_camera = test_webrtc_browser.fake_camera  # the same generated camera file, a fixture here too
slow_model = test_overload.slow_model  # the app's model made slow, a fixture here too
quick_pace = test_overload.quick_pace  # its pace judged quickly, which slow_model asks for

KEEP_CAMERA_STREAMS = """
window.cameraStreams = [];
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await getUserMedia(constraints);
  window.cameraStreams.push(stream);
  return stream;
};
"""
KEEP_WEBSOCKETS = """
window.webSockets = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    window.webSockets.push(this);
  }
};
"""
LIVE_CAMERA_TRACKS = "window.cameraStreams.flatMap((s) => s.getTracks()).filter((t) => t.readyState === 'live').length"

PUBLISHING = "document.getElementById('publish-status').dataset.state === 'connected'"
PLAYING_BACK = "document.getElementById('play-mode').textContent !== ''"
PUBLISHED_ID = "document.getElementById('publish-status').dataset.stream"


async def camera_page(browser: Any, client: TestClient) -> Any:
    """A new publish page of ``client``'s server whose opened cameras stay in ``window.cameraStreams``."""
    page = await browser.new_page()
    await page.add_init_script(KEEP_CAMERA_STREAMS)
    await page.goto(str(client.make_url("/static/publish.html")))
    return page


async def publish_camera(page: Any, stream_id: str | None = None) -> None:
    """Press "Use my camera" on ``page`` (as ``stream_id``, if given) until it publishes."""
    if stream_id is not None:
        await page.fill("input[name=stream]", stream_id)
    await page.click("#use-camera")
    await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)


pytestmark = pytest.mark.timeout(90)


def websocket_clients(client: TestClient) -> int:
    """The server's WebSocket viewers now: the publish page's is its only one."""
    assert client.app is not None
    return sum(viewer.name == "ws" for viewer in client.app[hub_key].viewers)


async def wait_for_websocket_clients(client: TestClient, count: int, what: str) -> None:
    async def reached() -> bool:
        return websocket_clients(client) == count

    await eventually(reached, WAIT_MS / 1000, what)


async def test_a_publish_refused_after_the_camera_opened_turns_the_camera_off(
    start_server: Start, fake_camera: Path
) -> None:
    """The server refuses the id (409: a camera of its own has it) after the page opened the camera."""
    client = await start_server(StreamConfig("door", "scene:"))
    async with camera_browser(fake_camera) as browser:
        page = await camera_page(browser, client)
        await page.fill("input[name=stream]", "door")
        await page.click("#use-camera")
        await page.wait_for_function("document.getElementById('publish-error').textContent !== ''", timeout=WAIT_MS)
        assert await page.text_content("#publish-status") == "camera off"
        assert await page.evaluate("window.cameraStreams.length") == 1, "the camera was opened"
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0, "the camera was turned off with the error"
        assert await page.is_enabled("#use-camera"), "the camera can be tried again"


async def test_a_camera_whose_stream_the_server_removed_is_turned_off_on_the_page_saying_why(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await camera_page(browser, client)
        await publish_camera(page, "browser")
        await wait_for_websocket_clients(client, 1, "the page to listen for the server ending its stream")
        assert (await client.delete("/api/streams/browser")).status == 204
        # Said by the server over the WebSocket, not guessed from a connection that times out ~20 s later.
        await page.wait_for_function(
            "document.getElementById('publish-error').textContent.includes('The server ended this camera')",
            timeout=WAIT_MS,
        )
        assert "removed" in (await page.text_content("#publish-error") or "")
        assert await page.text_content("#publish-status") == "camera off"
        assert await page.is_hidden("#stop-camera")
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0, "the camera was turned off"
        await wait_for_websocket_clients(client, 0, "the page's WebSocket to close")


@pytest.mark.parametrize("press", ["double click", "Enter twice"])
async def test_pressing_use_my_camera_twice_publishes_one_camera(
    start_server: Start, fake_camera: Path, press: str
) -> None:
    """A second press while the first is still asking for the camera or negotiating starts nothing."""
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await camera_page(browser, client)
        if press == "double click":
            await page.dblclick("#use-camera")
        else:
            await page.press("input[name=stream]", "Enter")
            await page.press("input[name=stream]", "Enter")
        # Played back: a second publish, started with the first, would have had its answer by now.
        await page.wait_for_function(PLAYING_BACK, timeout=WAIT_MS)
        streams = (await (await client.get("/api/streams")).json())["streams"]
        assert len(streams) == 1, f"one camera, one stream: {[s['id'] for s in streams]}"
        assert await page.evaluate("window.cameraStreams.length") == 1, "the camera was asked for once"
        assert await page.text_content("#publish-error") == ""
        assert await page.is_disabled("#use-camera"), "one camera at a time"


async def test_stopping_the_camera_closes_the_pages_websocket_and_it_can_start_again(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await camera_page(browser, client)
        await publish_camera(page)
        await wait_for_websocket_clients(client, 1, "the page's WebSocket")
        await page.click("#stop-camera")
        await wait_for_websocket_clients(client, 0, "the page's WebSocket to close")
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0, "the camera was turned off"
        assert await page.is_enabled("#use-camera")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        await wait_for_websocket_clients(client, 1, "the next publish's WebSocket")


async def test_a_camera_stopped_while_its_websocket_opens_leaves_no_websocket_open(
    start_server: Start, fake_camera: Path
) -> None:
    """With access tokens, the page's WebSocket first waits for a URL token to be minted: a camera
    stopped meanwhile must not leave a socket opened after it (one opened for the next camera is its own)."""
    token = "a" * 20
    client = await start_server(admin_tokens=(token,))
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(f"localStorage.setItem('segcast.token', '{token}');" + KEEP_WEBSOCKETS)
        minting = asyncio.Event()
        minted = asyncio.Event()

        async def hold_minting(route: Any) -> None:
            if json.loads(route.request.post_data or "{}").get("role") != "viewer":
                await route.continue_()  # the page's check that it may publish, before the camera
                return
            minting.set()
            await minted.wait()
            await route.continue_()

        await page.route("**/api/tokens*", hold_minting)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        async with asyncio.timeout(WAIT_MS / 1000):
            await minting.wait()
        await page.click("#stop-camera")
        async with page.expect_response("**/api/tokens*"):
            minted.set()
        # The camera on again: its socket comes after the stopped camera's token was handled.
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        await page.wait_for_function(
            "window.webSockets.filter((s) => s.readyState === WebSocket.OPEN).length === 1", timeout=WAIT_MS
        )
        await wait_for_websocket_clients(client, 1, "the second camera's WebSocket")
        assert await page.evaluate("window.webSockets.filter((s) => s.readyState !== WebSocket.CLOSED).length") == 1, (
            "the stopped camera's socket was opened after all"
        )


async def test_opening_the_viewer_while_publishing_opens_a_new_tab_and_the_camera_stays_on(
    start_server: Start, fake_camera: Path
) -> None:
    """The viewer's link opened in the same tab: leaving the page ("pagehide") turned the camera off,
    and the viewer said "No such stream". While a camera is on, every link away opens a new tab."""
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await camera_page(browser, client)
        await publish_camera(page, "browser")
        async with page.context.expect_page(timeout=WAIT_MS) as opened:
            await page.click("#open-viewer")
        viewer = await opened.value
        assert viewer.url.endswith("#/stream/browser")
        await wait_for_new_frame(viewer, "#video")  # the stream view shows the camera
        assert await page.evaluate(PUBLISHING), "the publish page is still publishing"
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 1, "the camera is still on"
        stream = await (await client.get("/api/streams/browser")).json()
        assert stream["state"] == "live"
        assert await page.get_attribute(".topbar nav a", "target") == "_blank", "All streams opens a new tab"
        await page.click("#stop-camera")
        assert await page.get_attribute(".topbar nav a", "target") is None, "with the camera off, links stay in the tab"


async def test_a_camera_stopped_as_its_playback_was_refused_leaves_no_fallback_picture_on_the_next(
    start_server: Start, fake_camera: Path
) -> None:
    """Stop, then "Use my camera" at once: the first camera's play offer, answered 404 once Stop had
    removed its stream, showed the MJPEG fallback (a broken picture) under the second camera's video.
    The first offer is held here until the second camera plays back, so it could only be answered last:
    Stop gives it up there and then (the page aborts it: its player is stopped while it connects)."""
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        first_offer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answer_first = asyncio.Event()

        async def hold_the_first_play_offer(route: Any) -> None:
            if first_offer.done():
                await route.continue_()
                return
            first_offer.set_result(None)
            await answer_first.wait()
            await route.continue_()

        await page.route("**/api/webrtc/play/**", hold_the_first_play_offer)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.click("#use-camera")
        await asyncio.wait_for(first_offer, WAIT_MS / 1000)
        first = await page.evaluate(PUBLISHED_ID)
        first_offer_given_up = page.expect_event(
            "requestfailed", lambda request: f"/api/webrtc/play/{first}" in request.url, timeout=WAIT_MS
        )
        async with first_offer_given_up:
            await page.click("#stop-camera")

        async def first_stream_gone() -> bool:
            return (await client.get(f"/api/streams/{first}")).status == 404

        await eventually(first_stream_gone, WAIT_MS / 1000, "the stopped camera's stream to be removed")
        await page.click("#use-camera")
        await page.wait_for_function(PLAYING_BACK, timeout=WAIT_MS)
        assert await page.evaluate(PUBLISHED_ID) != first
        answer_first.set()
        assert await page.is_hidden("#annotated-fallback"), "the first camera's refusal showed the fallback"
        assert await page.text_content("#play-mode") == "(WebRTC)"
        assert await page.is_visible("#annotated")


async def test_a_camera_the_server_cannot_keep_up_with_says_so_on_the_page_as_the_viewer_does(
    start_server: Start, fake_camera: Path, slow_model: SlowModel
) -> None:
    """A camera behind (tests/test_overload.py: a slow model) is said to be, in the viewer's words
    ("behind: 3.7 of 15 fps") with what to do, and no longer once the server keeps up."""
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        said = await wait_for_text(page, "#publish-pace", "behind")
        assert re.fullmatch(r"behind: \d+\.\d of \d+ fps", said.splitlines()[0]), said
        assert "process_fps" in said, "what to do, as the viewer says it"
        slow_model.fast.set()
        await page.wait_for_function("document.getElementById('publish-pace').hidden", timeout=WAIT_MS)
        assert await page.evaluate(PUBLISHING)
